"""Turns: the model pools of one host take turns, so each generates alone with every core.

A pool whose queue has work waits for the host's turn; the pool holding it consumes its queue
until the queue is empty and its running tasks are done, then hands the turn on. The turn goes
to the pool that has waited longest, and a holder that kept it past `turn_limit_s` while
another pool waited (counted from the later of the turn's start and the waiter's arrival) stops
taking new tasks, so a steady stream for one model cannot starve the others. The turn is a
lease the holder renews on every tick: a holder that dies frees it within `lease_s`, and a
waiter that dies drops out of the line with its registry entry.

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

# The turn's value: "NODENAME<TAB>STARTED_AT". Renewing or deleting it checks the holder in the
# same step: a lease that lapsed and went to another pool is never extended or freed by this one.
_IF_MINE = """
local value = redis.call('get', KEYS[1])
if not value or string.sub(value, 1, string.len(ARGV[1]) + 1) ~= ARGV[1] .. '\t' then
  return 0
end
if ARGV[2] == 'release' then return redis.call('del', KEYS[1]) end
return redis.call('pexpire', KEYS[1], ARGV[2])
"""


@dataclass(frozen=True)
class PoolLoad:
    """What a pool has to do: messages waiting in its queue, tasks it holds (reserved or
    running)."""

    queued: int
    in_flight: int


def _text(value) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _turn(client: redis.Redis, host: str) -> tuple[str, float] | None:
    value = _text(client.get(keys.turn_key(host)))
    if not value:
        return None
    name, _, since = value.partition("\t")
    return name, float(since or 0)


def holder(client: redis.Redis, host: str) -> str | None:
    turn = _turn(client, host)
    return turn[0] if turn else None


def extend(client: redis.Redis, host: str, nodename: str, seconds: float) -> bool:
    """Keep this pool's turn for `seconds` more; False when the turn is not (any longer) its."""
    return bool(client.eval(_IF_MINE, 1, keys.turn_key(host), nodename, int(seconds * 1000)))


def release(client: redis.Redis, host: str, nodename: str) -> None:
    """Give the turn up now (a pool done or stopping), and leave the line."""
    client.eval(_IF_MINE, 1, keys.turn_key(host), nodename, "release")
    client.zrem(keys.turn_waiting_key(host), nodename)


def _oldest_live_waiter(client: redis.Redis, host: str, me: str) -> tuple[str, float] | None:
    """The pool that has waited longest and is still alive; dead pools leave the line (this
    pool is alive, even before its heartbeat has published its registry entry)."""
    line = keys.turn_waiting_key(host)
    for member, since in client.zrange(line, 0, -1, withscores=True):
        name = _text(member)
        if name == me or client.exists(keys.worker_key(name)):
            return name, since
        client.zrem(line, name)
    return None


def tick(client: redis.Redis, host: str, nodename: str, load: PoolLoad, now: float,
         lease_s: float = LEASE_S, turn_limit_s: float = TURN_LIMIT_S) -> bool:
    """Whether this pool should consume its queue until the next tick."""
    turn, line = _turn(client, host), keys.turn_waiting_key(host)
    if turn and turn[0] == nodename:
        first = _oldest_live_waiter(client, host, nodename)
        overdue = first is not None and first[0] != nodename and \
            now - max(turn[1], first[1]) > turn_limit_s
        if load.in_flight or (load.queued and not overdue):
            if extend(client, host, nodename, lease_s):
                return bool(load.queued) and not overdue
            return False  # the lease lapsed under it (a paused machine): back to the line
        release(client, host, nodename)  # done, or the turn has been long enough
        if load.queued:
            client.zadd(line, {nodename: now}, nx=True)  # back in line, behind the others
        return False
    if not load.queued:
        client.zrem(line, nodename)
        return False
    client.zadd(line, {nodename: now}, nx=True)
    first = _oldest_live_waiter(client, host, nodename)
    if first is not None and first[0] != nodename:
        return False  # another pool has waited longer
    if client.set(keys.turn_key(host), f"{nodename}\t{now}", nx=True, px=int(lease_s * 1000)):
        client.zrem(line, nodename)
        return True
    return False
