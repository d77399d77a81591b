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


def update(client: redis.Redis, job_id: str, **fields) -> dict:
    job = get(client, job_id)
    job.update(fields, updated_at=time.time())
    client.set(keys.ingest_job_key(job_id), json.dumps(job), ex=JOB_TTL_S)
    return job


def recent(client: redis.Redis, limit: int = 20) -> list[dict]:
    ids = client.zrevrange(keys.INGEST_JOBS_INDEX, 0, limit - 1)
    found = []
    for job_id in ids:
        job_id = job_id.decode() if isinstance(job_id, bytes) else job_id
        raw = client.get(keys.ingest_job_key(job_id))
        if raw:
            found.append(json.loads(raw))
    return found
