"""Turns: the model pools of one host take turns, so each generates alone with every core.

A pool whose queue has work waits for the host's turn; the pool holding it consumes its queue
until the queue is empty and its running tasks are done, then hands the turn on. The turn goes
to the pool that has waited longest, and a holder that kept it past `turn_limit_s` while
another pool waited stops taking new tasks, so a steady stream for one model cannot starve the
others. The turn is a lease the holder renews on every tick: a holder that dies frees it
within `lease_s`, and a waiter that dies drops out of the line with its registry entry.

One tick is one decision, made by the worker's event loop once a second: `tick` says whether
the pool should consume its queue now. Pure Redis, no Celery: workers/turns.py applies it.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from shared.state import keys

LEASE_S = 30.0
# a model's share of a mixed stream: long enough for a batch's answers to run back to back
TURN_LIMIT_S = 600.0

# delete the turn only if it is still this holder's (it may have lapsed and gone to another)
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


@dataclass(frozen=True)
class PoolLoad:
    """What a pool has to do: messages waiting in its queue, tasks it holds (reserved or
    running)."""

    queued: int
    in_flight: int


def _text(value) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def holder(client: redis.Redis, host: str) -> str | None:
    return _text(client.get(keys.turn_key(host)))


def release(client: redis.Redis, host: str, nodename: str) -> None:
    """Give the turn up now (a pool stopping), and leave the line."""
    client.eval(_RELEASE, 1, keys.turn_key(host), nodename)
    client.zrem(keys.turn_waiting_key(host), nodename)


def _oldest_live_waiter(client: redis.Redis, host: str) -> tuple[str, float] | None:
    """The pool that has waited longest and is still alive; dead pools leave the line."""
    line = keys.turn_waiting_key(host)
    for member, since in client.zrange(line, 0, -1, withscores=True):
        name = _text(member)
        if client.exists(keys.worker_key(name)):
            return name, since
        client.zrem(line, name)
    return None


def tick(client: redis.Redis, host: str, nodename: str, load: PoolLoad, now: float,
         lease_s: float = LEASE_S, turn_limit_s: float = TURN_LIMIT_S) -> bool:
    """Whether this pool should consume its queue until the next tick."""
    turn, line = keys.turn_key(host), keys.turn_waiting_key(host)
    if holder(client, host) == nodename:
        first = _oldest_live_waiter(client, host)
        others_waited = first is not None and first[0] != nodename and \
            now - first[1] > turn_limit_s
        if load.in_flight or (load.queued and not others_waited):
            client.pexpire(turn, int(lease_s * 1000))
            return bool(load.queued) and not others_waited
        release(client, host, nodename)  # done, or the turn has been long enough
        if load.queued:
            client.zadd(line, {nodename: now}, nx=True)  # back in line, behind the others
        return False
    if not load.queued:
        client.zrem(line, nodename)
        return False
    client.zadd(line, {nodename: now}, nx=True)
    first = _oldest_live_waiter(client, host)
    if first is not None and first[0] != nodename:
        return False  # another pool has waited longer
    if client.set(turn, nodename, nx=True, px=int(lease_s * 1000)):
        client.zrem(line, nodename)
        return True
    return False
