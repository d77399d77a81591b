"""Ingestion job records in Redis: what the producer asked, what the worker did."""

from __future__ import annotations

import json
import time
import uuid

import redis

from shared.errors import UsageError
from shared.state import keys

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
FINISHED = {DONE, FAILED}
CANCELLED_BY_USER = "cancelled by the user"
JOB_TTL_S = 30 * 24 * 3600


def new_id() -> str:
    return uuid.uuid4().hex[:12]


def create(client: redis.Redis, job_id: str, collection: str, sources: list[dict],
           options: dict) -> dict:
    job = {"id": job_id, "collection": collection, "sources": sources, "options": options,
           "state": QUEUED, "stage": None, "done": 0, "total": 0, "error": None,
           "result": None, "created_at": time.time(), "updated_at": time.time()}
    with client.pipeline() as pipe:
        pipe.set(keys.ingest_job_key(job_id), json.dumps(job), ex=JOB_TTL_S)
        pipe.zadd(keys.INGEST_JOBS_INDEX, {job_id: job["created_at"]})
        pipe.execute()
    return job


def get(client: redis.Redis, job_id: str) -> dict:
    raw = client.get(keys.ingest_job_key(job_id))
    if raw is None:
        raise UsageError(f"unknown ingestion job {job_id!r}")
    return json.loads(raw)


class JobFinished(Exception):
    """The job ended (done, failed, cancelled by the user) while a worker still worked on it."""

    def __init__(self, job: dict):
        super().__init__(f"ingestion job {job['id']} is {job['state']} already")
        self.job = job


def update(client: redis.Redis, job_id: str, *, finished_ok: bool = False, **fields) -> dict:
    """Change fields of a job that has not ended, atomically: a finished job (done, failed,
    cancelled) raises JobFinished and is left as it is, unless finished_ok."""
    key = keys.ingest_job_key(job_id)

    def change(pipe) -> dict:
        raw = pipe.get(key)
        if raw is None:
            raise UsageError(f"unknown ingestion job {job_id!r}")
        job = json.loads(raw)
        if job["state"] in FINISHED and not finished_ok:
            raise JobFinished(job)
        job.update(fields, updated_at=time.time())
        pipe.multi()
        pipe.set(key, json.dumps(job), ex=JOB_TTL_S)
        return job

    return client.transaction(change, key, value_from_callable=True)


def fail(client: redis.Redis, job_id: str, error: str, **fields) -> dict:
    """End a job that has not ended as failed with `error`; returns the job as it is now (a job
    that had ended already stays as it was)."""
    try:
        return update(client, job_id, state=FAILED, error=error, error_code=1, **fields)
    except JobFinished as finished:
        return finished.job


def recent(client: redis.Redis, limit: int = 20) -> list[dict]:
    ids = client.zrevrange(keys.INGEST_JOBS_INDEX, 0, limit - 1)
    found = []
    for job_id in ids:
        job_id = job_id.decode() if isinstance(job_id, bytes) else job_id
        raw = client.get(keys.ingest_job_key(job_id))
        if raw:
            found.append(json.loads(raw))
    return found
