"""Document bytes the producer uploads for an ingestion job, kept until the job has used them
(or their time to live runs out). The worker never reads a path named in a message: only these."""

from __future__ import annotations

import redis

from shared.state import keys


def save(client: redis.Redis, job_id: str, documents: dict[int, bytes], ttl_s: int) -> None:
    """documents: the job's source index -> its bytes (URL sources have none)."""
    with client.pipeline() as pipe:
        for index, data in documents.items():
            pipe.set(keys.upload_key(job_id, index), data, ex=ttl_s)
        pipe.execute()


def load(client: redis.Redis, job_id: str, index: int) -> bytes | None:
    """The bytes of one source, or None when they expired (or were never uploaded)."""
    return client.get(keys.upload_key(job_id, index))


def discard(client: redis.Redis, job_id: str, count: int) -> None:
    if count:
        client.delete(*[keys.upload_key(job_id, i) for i in range(count)])
