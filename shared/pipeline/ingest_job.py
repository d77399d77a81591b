"""An ingestion job's life: fetch its documents, build the collection's next version, and end
the job done or failed with its reason, so a waiting producer never waits forever.

Safe to run twice (a redelivered task): a finished job is not done again, and the collection
lock keeps two runs from building on the same version."""

from __future__ import annotations

import logging

import redis

from shared.config import Settings, soft_limit
from shared.errors import RagfleetError
from shared.pipeline.core_sharing import PoolsFirst
from shared.pipeline.ingestion import SourceDocument, ingest
from shared.retrieval import download
from shared.state import jobs, locks, uploads

log = logging.getLogger(__name__)


def run(client: redis.Redis, job_id: str, embedder, settings: Settings,
        over_time: tuple[type[BaseException], ...] = ()) -> dict:
    """Run one job; returns its final record. over_time: exceptions that mean the task ran out
    of time (the task runner's soft-limit signal). A job that ends meanwhile (cancelled by the
    user) stops at its next progress step, and its record is left as the cancel made it."""
    job = jobs.get(client, job_id)
    if job["state"] in jobs.FINISHED:
        return job
    try:
        final = _run(client, job, embedder, settings, over_time)
    except jobs.JobFinished as finished:
        log.info("ingestion %s ended while it ran: %s", job_id, finished.job.get("error"))
        final = jobs.get(client, job_id)
    # done or failed, its uploaded bytes are of no more use (a retry is a new job)
    uploads.discard(client, job_id, len(job["sources"]))
    return final


def _run(client: redis.Redis, job: dict, embedder, settings: Settings,
         over_time: tuple[type[BaseException], ...]) -> dict:
    job_id = job["id"]
    try:
        with locks.collection_held(client, job["collection"], owner=job_id):
            jobs.update(client, job_id, state=jobs.RUNNING, stage="fetch")
            # the producer may ask for a lower download limit than the worker's, never a higher one
            max_bytes = min(settings.max_document_bytes,
                            job["options"].get("max_bytes") or settings.max_document_bytes)
            sources = [fetch(client, job_id, i, spec, max_bytes, settings.download_timeout_s,
                             settings.allow_private_urls)
                       for i, spec in enumerate(job["sources"])]
            report = ingest(
                client, job["collection"], sources, job["options"].get("chunk_size"),
                job["options"].get("chunk_overlap"), embedder,
                defaults=(settings.chunk_size, settings.chunk_overlap),
                # each step also checks the job: a cancelled one raises JobFinished here
                progress=lambda stage, done, total: jobs.update(
                    client, job_id, stage=stage, done=done, total=total),
                # half its time may go to waiting for the model pools (core_sharing)
                threads=PoolsFirst(client, soft_limit(settings.cpu_task_time_limit_s) / 2),
                embedder_kind=settings.embedder,
            )
    except jobs.JobFinished:
        raise
    except RagfleetError as exc:  # bad input: fail the job with its reason, do not retry
        log.warning("ingestion %s failed: %s", job_id, exc)
        return jobs.update(client, job_id, state=jobs.FAILED, error=str(exc),
                           error_code=exc.exit_code)
    except over_time:
        limit = settings.cpu_task_time_limit_s
        return jobs.update(client, job_id, state=jobs.FAILED, error_code=1,
                           error=f"ingestion exceeded the time limit of {limit} s "
                                 "(RAGFLEET_CPU_TASK_TIME_LIMIT_S); split the documents")
    except Exception as exc:  # a bug: the job must not stay 'running' for a waiting producer
        log.exception("ingestion %s failed", job_id)
        return jobs.update(client, job_id, state=jobs.FAILED, error_code=1,
                           error=f"ingestion failed: {type(exc).__name__}: {exc}")
    try:
        return jobs.update(client, job_id, state=jobs.DONE, stage="done", result=report.to_json())
    except jobs.JobFinished as finished:
        if not report.changed:
            raise
        # cancelled after its last progress step: the version is stored and current; say so
        return jobs.update(client, job_id, finished_ok=True, result=report.to_json(),
                           error=f"{finished.job.get('error')}, too late: version "
                                 f"{report.version} was already stored")


def fail_unfinished(client: redis.Redis, job_id: str, reason: str) -> None:
    """The job's worker process was killed (hard time limit), or died too often running it
    (pipeline.poison): fail the job unless it ended, and drop its uploaded bytes."""
    job = jobs.fail(client, job_id, reason)
    uploads.discard(client, job_id, len(job.get("sources", [])))


def cancel(client: redis.Redis, job_id: str) -> dict:
    """The user's cancel: a queued or running job ends failed, 'cancelled by the user', so a
    waiting `ingest --wait` returns; a worker that picks it up later skips it, one running it
    stops at its next progress step without storing a version. Its uploaded bytes are
    discarded. A job that had ended stays as it was. Returns the job as it is now."""
    job = jobs.fail(client, job_id, jobs.CANCELLED_BY_USER, cancelled=True)
    if job.get("cancelled"):
        uploads.discard(client, job_id, len(job["sources"]))
    return job


def fetch(client: redis.Redis, job_id: str, index: int, spec: dict, max_bytes: int,
          timeout_s: float, allow_private_urls: bool = False) -> SourceDocument:
    """Bytes the producer uploaded, or a URL download (public addresses only unless
    allow_private_urls); never a path named in the message."""
    if spec.get("url"):
        data = download.fetch(spec["url"], max_bytes, timeout_s, allow_private=allow_private_urls)
    else:
        data = uploads.load(client, job_id, index)
        if data is None:
            raise RagfleetError(f"{spec['name']}: the uploaded bytes expired before ingestion")
    return SourceDocument(spec["name"], data)
