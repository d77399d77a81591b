"""Batch tasks: retrieve once per distinct question (cpu), answer once per model (llm.<model>),
score each question id (cpu). Each is safe to run twice: results are stored exactly once."""

from __future__ import annotations

import logging
import time
from functools import lru_cache

from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

from broker.app import app, soft_limit
from broker.queues import ANSWER_TASK, RETRIEVE_TASK, SCORE_TASK, llm_queue
from shared import batch_pipeline, batch_store
from shared.collection_cache import CollectionCache
from shared.config import get_settings
from shared.embeddings import get_embedder
from workers import engine_holder, pool, store_client

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def collections() -> CollectionCache:
    return CollectionCache(store_client.get())


def _stopping(client, batch_id: str) -> bool:
    return batch_store.status(client, batch_id) in (batch_store.CANCELLING, batch_store.CANCELLED)


def _record_all(client, batch_id, records, model, unit, outcome, **fields) -> None:
    for question in records:
        if not batch_store.has_result(client, batch_id, question["id"], model):
            batch_store.record(client, batch_id, question["id"], model,
                               batch_store.result_record(question, model, unit, **fields),
                               outcome)


@app.task(name=RETRIEVE_TASK)
def retrieve(batch_id: str, unit: str, models: list[str] | None = None) -> None:
    """Retrieve the contexts of one distinct question, then hand it to each model's queue."""
    client = store_client.get()
    batch = batch_store.get(client, batch_id)
    question, records = batch_pipeline.unit_question(client, batch_id, unit)
    models = models or batch["models"]
    if _stopping(client, batch_id):
        for model in models:
            _record_all(client, batch_id, records, model, unit, "cancelled", cancelled=True)
        return
    batch_store.mark_started(client, batch_id)
    if batch_store.contexts(client, batch_id, unit) is None:
        try:
            retrieved = batch_pipeline.retrieve_contexts(collections(), get_embedder(), batch,
                                                         question)
        except Exception as exc:  # the collection version vanished, or a bug: fail, do not loop
            log.exception("retrieval failed for %s/%s", batch_id, unit)
            for model in models:
                _record_all(client, batch_id, records, model, unit, "failed",
                            error=f"retrieval failed: {exc}")
            return
        batch_store.save_contexts(client, batch_id, unit, retrieved)
    for model in models:
        app.send_task(ANSWER_TASK, args=[batch_id, unit, model, time.time()],
                      queue=llm_queue(model))


class AnswerTask(app.Task):
    def on_failure(self, exc, task_id, args, kwargs, einfo):
        """Also called in the worker's main process when the hard time limit killed the pool
        process: the pair is recorded as failed, so the batch does not wait for it forever."""
        batch_id, unit, model = args[:3]
        client = store_client.get()
        _, records = batch_pipeline.unit_question(client, batch_id, unit)
        reason = (f"generation exceeded the time limit of {exc.args[0]} s "
                  "(hard limit: the pool process was killed)"
                  if isinstance(exc, TimeLimitExceeded) else f"{type(exc).__name__}: {exc}")
        _record_all(client, batch_id, records, model, unit, "failed", error=reason)


@app.task(name=ANSWER_TASK, base=AnswerTask)
def answer(batch_id: str, unit: str, model: str, enqueued_at: float) -> None:
    """Generate this pool's answer to one distinct question, then score or store it."""
    started = time.time()
    client = store_client.get()
    question, records = batch_pipeline.unit_question(client, batch_id, unit)
    if all(batch_store.has_result(client, batch_id, q["id"], model) for q in records):
        return  # a duplicate delivery: everything is stored already
    if _stopping(client, batch_id):
        _record_all(client, batch_id, records, model, unit, "cancelled", cancelled=True)
        return
    if batch_store.answer(client, batch_id, unit, model) is None:
        batch = batch_store.get(client, batch_id)
        retrieved = batch_store.contexts(client, batch_id, unit)
        limit = get_settings().llm_task_time_limit_s
        try:
            # the engine stops itself at the soft limit; Celery's signals are the backstop
            result = batch_pipeline.generate_answer(
                engine_holder.get(), batch, model, question, retrieved,
                queue_s=max(0.0, started - enqueued_at),
                time_limit_s=max(1.0, soft_limit(limit) - (time.time() - started)))
        except (SoftTimeLimitExceeded, batch_pipeline.OverTimeLimit):
            _record_all(client, batch_id, records, model, unit, "failed",
                        error=f"generation exceeded the time limit of {limit} s")
            return
        except Exception as exc:  # model failed to load, prompt cannot fit, llama.cpp error
            log.warning("answer failed for %s/%s on %s: %s", batch_id, unit, model, exc)
            _record_all(client, batch_id, records, model, unit, "failed", error=str(exc))
            return
        result["worker"] = pool.current().nodename
        result["host"] = pool.current().nodename.split("@", 1)[-1]
        # answers decoded together take longer each: latency is read with the pool's setting
        result["parallel"] = pool.current().parallel
        batch_store.save_answer(client, batch_id, unit, model, result)
    stored = batch_store.answer(client, batch_id, unit, model)
    for question_record in records:
        if question_record.get("reference"):
            app.send_task(SCORE_TASK, args=[batch_id, question_record["id"], unit, model])
        else:  # nothing to compare with: stored unscored
            _record_all(client, batch_id, [question_record], model, unit, "completed",
                        answer=stored)


@app.task(name=SCORE_TASK)
def score(batch_id: str, question_id: str, unit: str, model: str) -> None:
    """Cosine similarity of the answer and the reference, with the retrieval embedder."""
    client = store_client.get()
    if batch_store.has_result(client, batch_id, question_id, model):
        return
    (question,) = [q for q in batch_store.questions(client, batch_id) if q["id"] == question_id]
    stored = batch_store.answer(client, batch_id, unit, model)
    started = time.perf_counter()
    cosine = batch_pipeline.similarity(get_embedder(), stored["answer"], question["reference"])
    stored = {**stored, "score_s": time.perf_counter() - started}
    batch_store.record(client, batch_id, question_id, model,
                       batch_store.result_record(question, model, unit, answer=stored,
                                                    cosine=cosine), "completed")
