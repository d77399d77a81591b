"""CPU-pool tasks: ingestion (and retrieval and scoring to come). Thin: unpack, call `shared`."""

from __future__ import annotations

import logging
import os
import socket
from functools import lru_cache

from celery.exceptions import SoftTimeLimitExceeded

from broker import keys
from broker.app import app
from broker.queues import INGEST_TASK, PING_TASK, SEARCH_TASK
from shared import download, jobs, locks
from shared.collection_cache import CollectionCache
from shared.config import get_settings
from shared.embeddings import get_embedder
from shared.errors import RagfleetError
from shared.ingestion import SourceDocument, ingest as run_ingestion
from shared.retrieval import retrieve
from workers import pool, store_client

log = logging.getLogger(__name__)


@app.task(name=PING_TASK)
def ping() -> dict:
    """Round trip through the `cpu` queue: which worker and process answered."""
    return {"worker": pool.current().nodename, "host": socket.gethostname(), "pid": os.getpid()}


class IngestTask(app.Task):
    def on_failure(self, exc, task_id, args, kwargs, einfo):
        """Also called in the worker's main process when the hard time limit killed the pool
        process: the job is failed, so `ingest --wait` does not wait forever."""
        client = store_client.get()
        if jobs.get(client, args[0])["state"] not in jobs.FINISHED:
            jobs.update(client, args[0], state=jobs.FAILED, error_code=1,
                        error=f"ingestion failed: {type(exc).__name__}: {exc}")


@app.task(name=INGEST_TASK, base=IngestTask)
def ingest(job_id: str) -> dict:
    """Run one ingestion job. Safe to run twice: a finished job is not done again, and the
    collection lock keeps two runs from building on the same version."""
    client = store_client.get()
    job = jobs.get(client, job_id)
    if job["state"] in jobs.FINISHED:
        return job
    settings = get_settings()
    try:
        with locks.held(client, keys.collection_lock(job["collection"]), owner=job_id):
            jobs.update(client, job_id, state=jobs.RUNNING, stage="fetch")
            # the producer may ask for a lower download limit than the worker's, never a higher one
            max_bytes = min(settings.max_document_bytes,
                            job["options"].get("max_bytes") or settings.max_document_bytes)
            sources = [_fetch(client, job_id, i, spec, max_bytes, settings.download_timeout_s)
                       for i, spec in enumerate(job["sources"])]
            report = run_ingestion(
                client, job["collection"], sources, job["options"].get("chunk_size"),
                job["options"].get("chunk_overlap"), get_embedder(),
                defaults=(settings.chunk_size, settings.chunk_overlap),
                progress=lambda stage, done, total: jobs.update(
                    client, job_id, stage=stage, done=done, total=total),
            )
    except RagfleetError as exc:  # bad input: fail the job with its reason, do not retry
        log.warning("ingestion %s failed: %s", job_id, exc)
        return jobs.update(client, job_id, state=jobs.FAILED, error=str(exc),
                           error_code=exc.exit_code)
    except SoftTimeLimitExceeded:
        limit = settings.cpu_task_time_limit_s
        return jobs.update(client, job_id, state=jobs.FAILED, error_code=1,
                           error=f"ingestion exceeded the time limit of {limit} s "
                                 "(RAGFLEET_CPU_TASK_TIME_LIMIT_S); split the documents")
    except Exception as exc:  # a bug: the job must not stay 'running' for a waiting producer
        log.exception("ingestion %s failed", job_id)
        return jobs.update(client, job_id, state=jobs.FAILED, error_code=1,
                           error=f"ingestion failed: {type(exc).__name__}: {exc}")
    job = jobs.update(client, job_id, state=jobs.DONE, stage="done", result=report.to_json())
    client.delete(*[keys.upload_key(job_id, i) for i in range(len(job["sources"]))])
    return job


def _fetch(client, job_id: str, index: int, spec: dict, max_bytes: int,
           timeout_s: float) -> SourceDocument:
    """Bytes the producer uploaded, or a URL download; never a path named in the message."""
    if spec.get("url"):
        data = download.fetch(spec["url"], max_bytes, timeout_s)
    else:
        data = client.get(keys.upload_key(job_id, index))
        if data is None:
            raise RagfleetError(f"{spec['name']}: the uploaded bytes expired before ingestion")
    return SourceDocument(spec["name"], data)


@lru_cache(maxsize=1)
def _collections() -> CollectionCache:
    return CollectionCache(store_client.get())


@app.task(name=SEARCH_TASK)
def search(collection: str, query: str, top_k: int = 4, bm25_weight: float = 0.3) -> dict:
    """Fused retrieval for one query, with what each retriever found on its own."""
    meta, index = _collections().get(collection)
    vector = get_embedder().embed([query])[0]
    hits = retrieve(index, query, vector, top_k=top_k, bm25_weight=bm25_weight)

    def describe(i: int, score: float) -> dict:
        chunk = index.chunks[i]
        return {"chunk": i, "document": chunk.document, "page": chunk.page, "score": score,
                "text": chunk.text}

    return {
        "collection": collection, "version": meta.version,
        "hits": [describe(h.chunk, h.score) for h in hits],
        "bm25": [describe(i, s) for i, s in index.bm25_search(query, top_k)],
        "faiss": [describe(i, s) for i, s in index.vector_search(vector, top_k)],
        "loads": _collections().loads, "pid": os.getpid(),
    }
