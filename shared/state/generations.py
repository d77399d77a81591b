"""Question generation jobs: the job (model, collection version, seed, the sampled passages)
written once by the producer, and one item per passage written once by a model pool (a
duplicate delivery never replaces an item). Both expire with the job's TTL: the questions file
the producer writes is what the user keeps."""

from __future__ import annotations

import json
import uuid

import redis

from shared.errors import UsageError
from shared.state import keys

TTL_S = 7 * 24 * 3600

_SAVE_ITEM = """
-- KEYS: items hash. ARGV: field, item json, ttl
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then
  local error = cjson.decode(old).error
  if error == nil or error == cjson.null then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""


class UnknownGeneration(UsageError):
    pass


def new_id() -> str:
    return "g-" + uuid.uuid4().hex[:10]


def create(client: redis.Redis, job_id: str, job: dict) -> None:
    with client.pipeline() as pipe:
        pipe.set(keys.generation_key(job_id), json.dumps(job), ex=TTL_S)
        pipe.delete(keys.generation_key(job_id, "items"))
        pipe.execute()


def get(client: redis.Redis, job_id: str) -> dict:
    raw = client.get(keys.generation_key(job_id))
    if raw is None:
        raise UnknownGeneration(f"unknown generation job {job_id!r} (or expired)")
    return json.loads(raw)


def save_item(client: redis.Redis, job_id: str, record: dict) -> bool:
    """Store the item of passage record["index"]; False when one is stored already. A failed
    item (an error, no question) is replaced by the next attempt's."""
    return bool(client.eval(_SAVE_ITEM, 1, keys.generation_key(job_id, "items"),
                            str(record["index"]), json.dumps(record), TTL_S))


def item(client: redis.Redis, job_id: str, index: int) -> dict | None:
    raw = client.hget(keys.generation_key(job_id, "items"), str(index))
    record = json.loads(raw) if raw else None
    return None if record is None or record.get("error") else record


def items(client: redis.Redis, job_id: str) -> list[dict]:
    raw = client.hgetall(keys.generation_key(job_id, "items"))
    return sorted((json.loads(v) for v in raw.values()), key=lambda r: r["index"])


def settled(client: redis.Redis, job_id: str) -> int:
    return client.hlen(keys.generation_key(job_id, "items"))
