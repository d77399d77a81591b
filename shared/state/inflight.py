"""Which worker holds which delivered task, so that a dead worker's tasks go back at once.

With late acknowledgement a delivered task stays in the broker's `unacked` hash until its worker
acknowledges it. When a whole worker dies (SIGKILL, the OOM killer, its host cut off), the broker
gives the task back only after the visibility timeout (11 minutes by default). So each worker
records the delivery tags it receives under its name, and the live workers look for records
whose worker has left the registry (its heartbeat stopped): those tasks are put back in their
queues (broker.recovery) within seconds. A task put back whose answer was in fact stored is
harmless: results are stored exactly once. The visibility timeout stays the backstop, for a
worker that died between receiving a task and recording it.

Pure Redis: nothing here knows Celery; the broker's unacknowledged hash is named by the caller.
"""

from __future__ import annotations

import time

import redis

from shared.state import keys

# A record outlives any task that can still be unacknowledged (the visibility timeout is far
# shorter); a live worker prunes it every heartbeat anyway.
RECORD_TTL_S = 7 * 24 * 3600


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


def hold(client: redis.Redis, nodename: str, delivery_tag: str, task_id: str) -> None:
    """Record that `nodename` received the task (before it runs or waits in the worker)."""
    key = keys.inflight_key(nodename)
    with client.pipeline() as pipe:
        pipe.hset(key, delivery_tag, task_id)
        pipe.expire(key, RECORD_TTL_S)
        pipe.sadd(keys.INFLIGHT_WORKERS, nodename)
        pipe.execute()


def held(client: redis.Redis, nodename: str) -> dict[str, str]:
    """Delivery tag -> task id of what `nodename` is recorded to hold."""
    return {_text(tag): _text(task) for tag, task in
            client.hgetall(keys.inflight_key(nodename)).items()}


def prune(client: redis.Redis, nodename: str, unacked_key: str) -> int:
    """Forget this worker's tags the broker no longer holds unacknowledged (acknowledged, or
    requeued at once by a prefork parent after its child died); returns how many."""
    key = keys.inflight_key(nodename)
    tags = client.hkeys(key)
    if not tags:
        return 0
    with client.pipeline(transaction=False) as pipe:
        for tag in tags:
            pipe.hexists(unacked_key, tag)
        present = pipe.execute()
    gone = [tag for tag, there in zip(tags, present) if not there]
    if gone:
        client.hdel(key, *gone)
    return len(gone)


def orphans(client: redis.Redis, grace_s: float, now: float | None = None) -> dict[str, list[str]]:
    """The delivery tags of each worker that has been missing from the registry for at least
    grace_s (a live worker gets that long to publish again, after a Redis restart that outlived
    its registry entry, before its tasks are taken from it). A tag that a live worker also holds
    (the task was put back and delivered again) stays where it is. A few round trips, no scan:
    every worker runs this after each heartbeat."""
    now = time.time() if now is None else now
    recorded = sorted(_text(n) for n in client.smembers(keys.INFLIGHT_WORKERS))
    with client.pipeline(transaction=False) as pipe:
        for nodename in recorded:
            pipe.exists(keys.worker_key(nodename))
        alive = pipe.execute()
    live = [n for n, there in zip(recorded, alive) if there]
    missing = [n for n, there in zip(recorded, alive) if not there]
    if live:  # a worker seen again is no longer a suspect
        client.hdel(keys.INFLIGHT_MISSING, *live)
    dead = []
    for nodename in missing:
        client.hsetnx(keys.INFLIGHT_MISSING, nodename, now)
        since = float(client.hget(keys.INFLIGHT_MISSING, nodename) or now)
        if now - since >= grace_s:
            dead.append(nodename)
    if not dead:
        return {}
    held_live = {tag for nodename in live for tag in held(client, nodename)}
    return {nodename: [tag for tag in held(client, nodename) if tag not in held_live]
            for nodename in dead}


def forget(client: redis.Redis, nodename: str) -> None:
    """Drop a worker's record (its tasks were put back, it starts afresh, or it stopped)."""
    with client.pipeline() as pipe:
        pipe.delete(keys.inflight_key(nodename))
        pipe.srem(keys.INFLIGHT_WORKERS, nodename)
        pipe.hdel(keys.INFLIGHT_MISSING, nodename)
        pipe.execute()
