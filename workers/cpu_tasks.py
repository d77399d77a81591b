"""Tasks of the `cpu` queue: ingestion, retrieval and scoring. Adapters: each unpacks its
arguments, calls one function of shared.pipeline and sends what that returns next."""

from __future__ import annotations

import os
import socket
import time

from celery.exceptions import SoftTimeLimitExceeded

from broker.app import app
from broker.queues import ANSWER_TASK, INGEST_TASK, PING_TASK, RETRIEVE_TASK, SCORE_TASK, llm_queue
from shared.config import get_settings, soft_limit
from shared.pipeline import answering, ingest_job
from shared.pipeline.core_sharing import PoolsFirst
from shared.retrieval.embeddings import get_embedder
from workers import pool, resources
from workers.task_base import CountedTask


@app.task(name=PING_TASK)
def ping() -> dict:
    """Round trip through the `cpu` queue: which worker and process answered."""
    return {"worker": pool.current().nodename, "host": socket.gethostname(), "pid": os.getpid()}


class IngestTask(CountedTask):
    def give_up(self, args, reason):
        ingest_job.fail_unfinished(resources.store(), args[0], f"ingestion failed: {reason}")

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        """Also called in the worker's main process when the hard time limit killed the pool
        process: the job is failed, so `ingest --wait` does not wait forever."""
        ingest_job.fail_unfinished(resources.store(), args[0],
                                   f"ingestion failed: {type(exc).__name__}: {exc}")


@app.task(name=INGEST_TASK, base=IngestTask)
def ingest(job_id: str) -> dict:
    """Run one ingestion job into a new collection version."""
    return ingest_job.run(resources.store(), job_id, get_embedder(), get_settings(),
                          over_time=(SoftTimeLimitExceeded,))


class RetrieveTask(CountedTask):
    def give_up(self, args, reason):
        batch_id, unit, *models = args
        answering.record_retrieval_failure(resources.store(), batch_id, unit,
                                           models[0] if models else None, reason)


class ScoreTask(CountedTask):
    def give_up(self, args, reason):
        answering.record_scoring_failure(resources.store(), *args, reason)


@app.task(name=RETRIEVE_TASK, base=RetrieveTask)
def retrieve(batch_id: str, unit: str, models: list[str] | None = None) -> None:
    """Retrieve the contexts of one distinct question, then hand it to each model's queue."""
    for model in answering.retrieve_unit(resources.store(), resources.collections(),
                                         get_embedder(), batch_id, unit, models):
        app.send_task(ANSWER_TASK, args=[batch_id, unit, model, time.time()],
                      queue=llm_queue(model))


@app.task(name=SCORE_TASK, base=ScoreTask)
def score(batch_id: str, question_id: str, unit: str, model: str) -> None:
    """Score one stored answer against its reference, leaving the cores to this host's model
    pools while they generate (within answering.SCORE_MAX_PAUSE_S)."""
    store, settings = resources.store(), get_settings()
    pause = min(answering.SCORE_MAX_PAUSE_S, soft_limit(settings.cpu_task_time_limit_s) / 2)
    answering.score_result(store, resources.scoring_embedder(), batch_id, question_id, unit, model,
                           threads=PoolsFirst(store, pause)
                           if settings.score_waits_for_pools else None)
