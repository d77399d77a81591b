"""Poison messages: a task whose worker dies every time it runs it.

Late acknowledgement with reject-on-worker-lost delivers a task again when its worker process
dies, so a task that always kills it (an ingestion that runs out of memory, a llama.cpp abort)
would be delivered, and its model reloaded, forever. Every start of a task is counted
(state.deliveries); a task that returns forgets its count, so a count above one means the earlier
deliveries died. Once `max_deliveries` deliveries have died, the next one is not run: the task's
work is settled as failed with the cause (answering.record_failure and friends,
ingest_job.fail_unfinished) and the message is acknowledged.
"""

from __future__ import annotations

import redis

from shared.state import deliveries


def died_reason(deaths: int) -> str:
    times = "once" if deaths == 1 else f"{deaths} times"
    return f"the worker died {times} running this task (killed or crashed: out of memory?)"


def admit(client: redis.Redis, task_id: str, max_deliveries: int) -> str | None:
    """Count this delivery of task_id. None: run it. Otherwise the reason to settle its work
    as failed with, instead of running it: its worker died max_deliveries times running it."""
    deaths = deliveries.count(client, task_id) - 1
    if deaths < max_deliveries:
        return None
    return died_reason(deaths)


def returned(client: redis.Redis, task_id: str) -> None:
    """The task returned (done, or failed with its reason): it is not a poison message."""
    deliveries.forget(client, task_id)
