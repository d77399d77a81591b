"""Batches in Redis, like a hosted batch API: status, counters, and exactly one stored result
per (batch, question id, model) however often a task runs.

A result is written with HSETNX and counted in the same Lua script, so a task that runs twice
(redelivered after a lost worker) can neither double a result nor its count, and the batch's
status moves to its final value exactly when the last result lands.
"""

from __future__ import annotations

import json
import time
import uuid

import redis

from shared.errors import UsageError
from shared.state import keys

QUEUED, RUNNING, COMPLETED, FAILED = "queued", "running", "completed", "failed"
CANCELLING, CANCELLED = "cancelling", "cancelled"
FINISHED = {COMPLETED, FAILED, CANCELLED}
OUTCOMES = ("completed", "failed", "cancelled")

_RECORD = """
-- KEYS: batch hash, results hash. ARGV: field, result json, outcome, model, now
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], ARGV[3], 1)
redis.call('HINCRBY', KEYS[1], ARGV[3] .. ':' .. ARGV[4], 1)
local b = redis.call('HMGET', KEYS[1], 'total', 'completed', 'failed', 'cancelled', 'status')
if b[5] == 'queued' then redis.call('HSET', KEYS[1], 'status', 'running') b[5] = 'running' end
local done = tonumber(b[2] or 0) + tonumber(b[3] or 0) + tonumber(b[4] or 0)
if done >= tonumber(b[1]) then
  local final = 'completed'
  if b[5] == 'cancelling' then final = 'cancelled'
  elseif tonumber(b[2] or 0) == 0 then final = 'failed' end
  redis.call('HSET', KEYS[1], 'status', final, 'finished_at', ARGV[5])
end
redis.call('HSET', KEYS[1], 'updated_at', ARGV[5])
return 1
"""

_START = """
if redis.call('HGET', KEYS[1], 'status') == 'queued' then
  redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[1])
end
return redis.call('HGET', KEYS[1], 'status')
"""


# For --resume, atomic and idempotent: a result is forgotten (and its counters decremented)
# only by the call that deleted it, so two resumes or a retried call cannot decrement twice.
_REOPEN = r"""
-- KEYS: batch hash, results hash, answers hash, unsent units set. ARGV: now
local s = redis.call('HGET', KEYS[1], 'status')
if s ~= 'completed' and s ~= 'failed' and s ~= 'cancelled' then return 0 end
local forgotten = 0
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all, 2 do
  local r = cjson.decode(all[i + 1])
  local outcome = nil
  if r.cancelled == true then outcome = 'cancelled'
  elseif type(r.error) == 'string' and r.error ~= '' then outcome = 'failed' end
  if outcome and type(r.unit) == 'string' and redis.call('HDEL', KEYS[2], all[i]) == 1 then
    redis.call('HINCRBY', KEYS[1], outcome, -1)
    redis.call('HINCRBY', KEYS[1], outcome .. ':' .. r.model, -1)
    redis.call('HDEL', KEYS[3], r.unit .. '\t' .. r.model)
    redis.call('SADD', KEYS[4], r.unit)
    forgotten = forgotten + 1
  end
end
if forgotten > 0 then
  redis.call('HSET', KEYS[1], 'status', 'queued', 'updated_at', ARGV[1])
  redis.call('HDEL', KEYS[1], 'finished_at')
end
return forgotten
"""

_CANCEL = """
local s = redis.call('HGET', KEYS[1], 'status')
if s == 'queued' or s == 'running' then redis.call('HSET', KEYS[1], 'status', 'cancelling') end
return redis.call('HGET', KEYS[1], 'status')
"""

_DELETE = """
-- KEYS: the batch hash, then its parts, then the batches index. ARGV: batch id
local s = redis.call('HGET', KEYS[1], 'status')
if s ~= 'completed' and s ~= 'failed' and s ~= 'cancelled' then return s or false end
redis.call('DEL', unpack(KEYS, 1, #KEYS - 1))
redis.call('ZREM', KEYS[#KEYS], ARGV[1])
return s
"""


class UnknownBatch(UsageError):
    pass


def result_record(question: dict, model: str, unit: str | None, answer: dict | None = None,
                  cosine: float | None = None, error: str | None = None,
                  cancelled: bool = False, retrieval: dict | None = None) -> dict:
    """The stored result of one (question id, model). retrieval: where the reference's cited
    pages ranked among the question's hits (shared by every model)."""
    return {"question_id": question["id"], "model": model, "unit": unit,
            "question": question["question"], "reference": question.get("reference"),
            "sources": question.get("sources", []), "retrieval": retrieval, "cosine": cosine,
            "error": error, "cancelled": cancelled,
            **({"base_id": question["base_id"], "repeat": question["repeat"]}
               if question.get("base_id") else {}),
            **(answer or {"answer": None})}


def result_field(question_id: str, model: str) -> str:
    return f"{question_id}\t{model}"


def answer_field(unit: str, model: str) -> str:
    return f"{unit}\t{model}"


def new_id() -> str:
    return "b-" + uuid.uuid4().hex[:10]


def create(client: redis.Redis, batch_id: str, meta: dict, questions: list[dict],
           units: dict[str, list[str]]) -> None:
    """meta: collection, version, models, params. units: distinct question text -> its ids.
    Every unit starts unsent; the producer marks each sent after sending it (mark_sent)."""
    now = time.time()
    total = len(questions) * len(meta["models"])
    with client.pipeline(transaction=True) as pipe:
        pipe.set(keys.batch_key(batch_id, "questions"), json.dumps(questions))
        pipe.set(keys.batch_key(batch_id, "units"), json.dumps(units))
        if units:
            pipe.sadd(keys.batch_key(batch_id, "unsent"), *units)
        pipe.hset(keys.batch_key(batch_id), mapping={
            "id": batch_id, "meta": json.dumps(meta), "status": QUEUED, "total": total,
            "completed": 0, "failed": 0, "cancelled": 0, "created_at": now, "updated_at": now,
        })
        pipe.zadd(keys.BATCHES_INDEX, {batch_id: now})
        pipe.execute()


def get(client: redis.Redis, batch_id: str) -> dict:
    raw = client.hgetall(keys.batch_key(batch_id))
    if not raw:
        raise UnknownBatch(f"unknown batch {batch_id!r}")
    raw = {_s(k): _s(v) for k, v in raw.items()}
    meta = json.loads(raw.pop("meta"))
    batch = {"id": raw["id"], "status": raw["status"], **meta}
    for name in ("total", *OUTCOMES):
        batch[name] = int(raw.get(name, 0))
    for name in ("created_at", "updated_at", "started_at", "finished_at"):
        batch[name] = float(raw[name]) if name in raw else None
    batch["per_model"] = {
        m: {o: int(raw.get(f"{o}:{m}", 0)) for o in OUTCOMES} for m in meta["models"]
    }
    # questions answered, scored or not yet: progress shows those waiting for their scores
    batch["answered"] = {m: int(raw.get(f"answered:{m}", 0)) for m in meta["models"]}
    return batch


def questions(client: redis.Redis, batch_id: str) -> list[dict]:
    raw = client.get(keys.batch_key(batch_id, "questions"))
    if raw is None:
        raise UnknownBatch(f"unknown batch {batch_id!r}")
    return json.loads(raw)


def units(client: redis.Redis, batch_id: str) -> dict[str, list[str]]:
    return json.loads(client.get(keys.batch_key(batch_id, "units")) or "{}")


def mark_sent(client: redis.Redis, batch_id: str, unit: str) -> None:
    """The unit's retrieve task is sent: --resume will not send it again."""
    client.srem(keys.batch_key(batch_id, "unsent"), unit)


def unsent(client: redis.Redis, batch_id: str) -> dict[str, list[tuple[str, str]]]:
    """Units not known to be sent (an interrupted ask or resume, or reopened), each with its
    (question id, model) pairs that have no result yet."""
    names = {_s(u) for u in client.smembers(keys.batch_key(batch_id, "unsent"))}
    if not names:
        return {}
    models = get(client, batch_id)["models"]
    stored = {_s(f) for f in client.hkeys(keys.batch_key(batch_id, "results"))}
    return {unit: [(q, m) for q in ids for m in models if result_field(q, m) not in stored]
            for unit, ids in units(client, batch_id).items() if unit in names}


def mark_started(client: redis.Redis, batch_id: str) -> str:
    return _s(client.eval(_START, 1, keys.batch_key(batch_id), time.time()))


def status(client: redis.Redis, batch_id: str) -> str | None:
    value = client.hget(keys.batch_key(batch_id), "status")
    return _s(value) if value is not None else None


def save_contexts(client: redis.Redis, batch_id: str, unit: str, contexts: dict) -> None:
    client.hset(keys.batch_key(batch_id, "contexts"), unit, json.dumps(contexts))


def contexts(client: redis.Redis, batch_id: str, unit: str) -> dict | None:
    raw = client.hget(keys.batch_key(batch_id, "contexts"), unit)
    return json.loads(raw) if raw else None


# the first answer wins; its questions count as answered (shown before they are scored)
_SAVE_ANSWER = """
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], 'answered:' .. ARGV[3], tonumber(ARGV[4]))
return 1
"""


def save_answer(client: redis.Redis, batch_id: str, unit: str, model: str, answer: dict,
                questions: int = 1) -> bool:
    """Keep the first answer for (unit, model); a duplicate run's answer is dropped. questions:
    how many of the batch's question ids the unit answers (counted as answered)."""
    return bool(client.eval(_SAVE_ANSWER, 2, keys.batch_key(batch_id),
                            keys.batch_key(batch_id, "answers"), answer_field(unit, model),
                            json.dumps(answer), model, questions))


def answer(client: redis.Redis, batch_id: str, unit: str, model: str) -> dict | None:
    raw = client.hget(keys.batch_key(batch_id, "answers"), answer_field(unit, model))
    return json.loads(raw) if raw else None


def record(client: redis.Redis, batch_id: str, question_id: str, model: str, result: dict,
           outcome: str) -> bool:
    """Store the one result of (question, model) and count it; False if one was already stored."""
    if outcome not in OUTCOMES:
        raise ValueError(outcome)
    stored = client.eval(_RECORD, 2, keys.batch_key(batch_id), keys.batch_key(batch_id, "results"),
                         result_field(question_id, model), json.dumps(result), outcome, model,
                         time.time())
    return bool(stored)


def has_result(client: redis.Redis, batch_id: str, question_id: str, model: str) -> bool:
    return bool(client.hexists(keys.batch_key(batch_id, "results"),
                               result_field(question_id, model)))


def results(client: redis.Redis, batch_id: str) -> list[dict]:
    raw = client.hgetall(keys.batch_key(batch_id, "results"))
    return [json.loads(v) for v in raw.values()]


def cancel(client: redis.Redis, batch_id: str) -> str:
    """Stop a batch: every (question, model) without a result is recorded as cancelled now, so
    queued tasks find it settled and skip; finished results stay. Returns the final status."""
    current = status(client, batch_id)
    if current is None:
        raise UnknownBatch(f"unknown batch {batch_id!r}")
    if current in FINISHED:
        return current
    settled = _s(client.eval(_CANCEL, 1, keys.batch_key(batch_id)))
    if settled in FINISHED:
        return settled  # it finished in the meantime
    models = get(client, batch_id)["models"]
    unit_of = {qid: unit for unit, ids in units(client, batch_id).items() for qid in ids}
    for question in questions(client, batch_id):
        for model in models:
            if not has_result(client, batch_id, question["id"], model):
                record(client, batch_id, question["id"], model,
                       result_record(question, model, unit_of.get(question["id"]),
                                     cancelled=True), "cancelled")
    return status(client, batch_id)


def reopen(client: redis.Redis, batch_id: str) -> int:
    """For --resume: forget the failed and cancelled results of a finished batch and mark their
    units unsent, so the caller sends them again (see unsent). Returns how many results were
    forgotten. A batch still in progress is refused, unless some of its units were never sent:
    nothing is working on those."""
    state = status(client, batch_id)
    if state is None:
        raise UnknownBatch(f"unknown batch {batch_id!r}")
    if state in FINISHED:
        return int(client.eval(_REOPEN, 4, keys.batch_key(batch_id),
                               keys.batch_key(batch_id, "results"),
                               keys.batch_key(batch_id, "answers"),
                               keys.batch_key(batch_id, "unsent"), time.time()))
    if state == CANCELLING or not client.exists(keys.batch_key(batch_id, "unsent")):
        raise UsageError(f"batch {batch_id} is still {state}: resume it when it is done")
    return 0


def delete(client: redis.Redis, batch_id: str) -> str:
    """Delete a finished batch: its status, questions, units, contexts, answers and results,
    and its entry in the list of batches, in one step. A batch still queued, running or
    cancelling is refused (its tasks would write to it again). Returns the status it had."""
    batch_keys = [keys.batch_key(batch_id), *(keys.batch_key(batch_id, part)
                                              for part in keys.BATCH_PARTS)]
    state = client.eval(_DELETE, len(batch_keys) + 1, *batch_keys, keys.BATCHES_INDEX, batch_id)
    if state is None:
        client.zrem(keys.BATCHES_INDEX, batch_id)  # an index entry left without its batch
        raise UnknownBatch(f"unknown batch {batch_id!r}")
    state = _s(state)
    if state not in FINISHED:
        raise UsageError(f"batch {batch_id} is still {state}: cancel it or wait until it is "
                         "done, then delete it")
    return state


def list_batches(client: redis.Redis, limit: int = 50) -> list[dict]:
    found = []
    for batch_id in client.zrevrange(keys.BATCHES_INDEX, 0, limit - 1):
        try:
            found.append(get(client, _s(batch_id)))
        except UnknownBatch:
            continue
    return found


def _s(value) -> str:
    return value.decode() if isinstance(value, bytes) else value
