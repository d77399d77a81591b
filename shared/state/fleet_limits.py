"""The fleet's limits, published in Redis: every worker on a Redis must share them.

Each worker restores the unacknowledged tasks it finds older than its own visibility timeout,
whichever worker holds them. A pool with a longer time limit (so a longer visibility timeout)
would have its running tasks restored, and run twice, by any worker with a shorter one. So the
first worker publishes its visibility timeout and task time limits; a worker whose own differ is
refused at start. The published limits live while workers keep them fresh (their heartbeat), and
are withdrawn when the last worker stops, so a fleet restarted with new settings publishes anew.
"""

from __future__ import annotations

import json

import redis

from shared.config import Settings
from shared.errors import UsageError
from shared.state import keys

# what each limit is called where a user sets it
SETTINGS = {
    "llm_task_time_limit_s": "RAGFLEET_LLM_TASK_TIME_LIMIT_S",
    "cpu_task_time_limit_s": "RAGFLEET_CPU_TASK_TIME_LIMIT_S",
    "visibility_timeout_s": "RAGFLEET_VISIBILITY_TIMEOUT_S",
}
MIN_TTL_S = 60


def of(settings: Settings) -> dict[str, int]:
    """This process's limits (the visibility timeout as it applies, default or set)."""
    return {"llm_task_time_limit_s": settings.llm_task_time_limit_s,
            "cpu_task_time_limit_s": settings.cpu_task_time_limit_s,
            "visibility_timeout_s": settings.visibility_timeout}


def ttl_for(heartbeat_interval_s: float) -> int:
    """Published limits outlive a few missed heartbeats and a slow worker start."""
    return max(MIN_TTL_S, int(heartbeat_interval_s * 3))


def published(client: redis.Redis) -> dict[str, int] | None:
    raw = client.get(keys.FLEET_LIMITS)
    return json.loads(raw) if raw else None


def claim(client: redis.Redis, mine: dict[str, int], ttl_s: int) -> dict[str, int]:
    """Publish `mine` unless limits are published already; returns the fleet's limits."""
    for _ in range(5):
        if client.set(keys.FLEET_LIMITS, json.dumps(mine), nx=True, ex=ttl_s):
            return mine
        found = published(client)
        if found is not None:
            return found
    return mine  # published and expired five times over: nothing to agree with


def disagreements(mine: dict[str, int], fleet: dict[str, int]) -> list[str]:
    """Each limit of `mine` that differs from the fleet's, as 'VARIABLE is A here, B in the
    fleet'. A limit the fleet did not publish is not compared."""
    return [f"{SETTINGS.get(name, name)} is {value} here but {fleet[name]} in the fleet"
            for name, value in mine.items() if name in fleet and fleet[name] != value]


def join(client: redis.Redis, mine: dict[str, int], ttl_s: int) -> None:
    """A worker starting: publish its limits if none are, else refuse it (UsageError, one line)
    when its own differ from the fleet's."""
    check(mine, claim(client, mine, ttl_s))


def check(mine: dict[str, int], fleet: dict[str, int] | None) -> None:
    differ = disagreements(mine, fleet or {})
    if differ:
        raise UsageError(
            f"{'; '.join(differ)} on this Redis: every worker must use the fleet's limits, or "
            "one restores another's running tasks early; use the fleet's values, or stop all "
            "its workers first")


def refresh(client: redis.Redis, mine: dict[str, int], ttl_s: int) -> None:
    """A live worker's heartbeat: keep the fleet's limits published (again, if they expired)."""
    if claim(client, mine, ttl_s) == mine:
        client.expire(keys.FLEET_LIMITS, ttl_s)


def withdraw(client: redis.Redis) -> None:
    """The last worker stopped: the next one publishes its own."""
    client.delete(keys.FLEET_LIMITS)
