"""The producer's side of `ragfleet questions generate`: check everything, sample the passages,
store the job, send one task per passage to the model's queue; later, collect and filter."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import redis

from broker.queues import GENERATE_TASK, llm_queue
from producer import polling
from producer.batch_client import check_pools
from shared.errors import UsageError
from shared.llm.catalog import Catalog
from shared.pipeline import question_filters, question_generation
from shared.state import generations


def check_output(path: Path | None, force: bool) -> None:
    if path is not None and path.exists() and not force:
        raise UsageError(f"{path} exists: choose another -o, or pass --force to replace it")
    if path is not None and not path.parent.is_dir():
        raise UsageError(f"{path.parent} is not a directory")


def submit(app, client: redis.Redis, catalog: Catalog, collection: str, model: str, n: int,
           seed: int, queue_anyway: bool) -> tuple[str, dict]:
    """Returns the job id and the job. Nothing is sent unless every check passes."""
    catalog.get(model)  # an unknown model: one line, exit 2
    version, chunks = question_generation.collection_chunks(client, collection)
    check_pools(client, [model], queue_anyway)
    passages = question_generation.sample_passages(chunks, n, seed)
    job_id = generations.new_id()
    job = {"id": job_id, "collection": collection, "version": version, "model": model, "n": n,
           "seed": seed, "prompt": question_generation.PROMPT_LABEL, "created_at": time.time(),
           "passages": passages}
    generations.create(client, job_id, job)
    for index in range(len(passages)):
        app.send_task(GENERATE_TASK, args=[job_id, index], queue=llm_queue(model))
    return job_id, job


def wait(client: redis.Redis, job_id: str, total: int, on_progress=None,
         timeout_s: float | None = None) -> None:
    """Until every one of the job's `total` passages has its item (or its failure)."""
    polling.until_finished(lambda: {"settled": generations.settled(client, job_id)},
                           lambda r: r["settled"] >= total, f"generation {job_id}",
                           on_progress=on_progress, timeout_s=timeout_s)


def collect(client: redis.Redis, job_id: str) -> tuple[dict, list[dict], Counter, int]:
    """The job, the items kept (at most the n asked for), why the others were dropped, and how
    many passages have no item yet."""
    job = generations.get(client, job_id)
    items = generations.items(client, job_id)
    kept, dropped = question_filters.filter_items(items, job["passages"])
    if len(kept) > job["n"]:  # more passages than asked for were sampled: keep the first n
        dropped["more than -n"] += len(kept) - job["n"]
        kept = kept[:job["n"]]
    return job, kept, dropped, len(job["passages"]) - len(items)
