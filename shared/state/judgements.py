"""Judgements of a batch's answers by a judging model (`ragfleet judge`), stored apart from the
results: one hash per (batch, judging model), so the cosine result is never touched.

A judgement with a grade is kept: a duplicate delivery or a later run does not replace it; a
failed one (no grade) is replaced by the next attempt."""

from __future__ import annotations

import json

import redis

from shared.state import keys
from shared.state.batch_store import result_field

_SAVE = """
-- KEYS: judge hash, judges set. ARGV: field, judgement json, judge model
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old and type(cjson.decode(old).grade) == 'number' then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
return 1
"""


def save(client: redis.Redis, batch_id: str, judge_model: str, record: dict) -> bool:
    """Store the judgement of (record's question id, model) by judge_model; False when a graded
    one is stored already (kept)."""
    field = result_field(record["question_id"], record["model"])
    return bool(client.eval(_SAVE, 2, keys.judge_key(batch_id, judge_model),
                            keys.judges_key(batch_id), field, json.dumps(record), judge_model))


def get(client: redis.Redis, batch_id: str, judge_model: str, question_id: str,
        model: str) -> dict | None:
    raw = client.hget(keys.judge_key(batch_id, judge_model), result_field(question_id, model))
    return json.loads(raw) if raw else None


def of_judge(client: redis.Redis, batch_id: str, judge_model: str) -> dict[tuple[str, str], dict]:
    """(question id, model) -> the judgement, for one judging model."""
    raw = client.hgetall(keys.judge_key(batch_id, judge_model))
    found = {}
    for value in raw.values():
        record = json.loads(value)
        found[(record["question_id"], record["model"])] = record
    return found


def judge_models(client: redis.Redis, batch_id: str) -> list[str]:
    return sorted(_s(m) for m in client.smembers(keys.judges_key(batch_id)))


def of_batch(client: redis.Redis, batch_id: str) -> dict[str, dict[tuple[str, str], dict]]:
    """Judging model -> (question id, model) -> judgement: every judgement of the batch."""
    return {judge: of_judge(client, batch_id, judge) for judge in judge_models(client, batch_id)}


def stored_result(client: redis.Redis, batch_id: str, question_id: str, model: str) -> dict | None:
    """One stored result of the batch (what is judged), without reading all of them."""
    raw = client.hget(keys.batch_key(batch_id, "results"), result_field(question_id, model))
    return json.loads(raw) if raw else None


def delete(client: redis.Redis, batch_id: str) -> int:
    """Forget every judgement of a batch (with the batch); returns how many keys went."""
    names = [keys.judge_key(batch_id, judge) for judge in judge_models(client, batch_id)]
    return client.delete(*names, keys.judges_key(batch_id))


def _s(value) -> str:
    return value.decode() if isinstance(value, bytes) else value
