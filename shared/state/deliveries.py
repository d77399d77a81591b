"""How many times each task has started, by task id.

With late acknowledgement a task whose worker dies is delivered again (at once by a prefork
parent, after the visibility timeout when the whole worker died). A task that kills its worker
every time (out of memory, a llama.cpp abort) would come back forever; counting its starts lets
the pipeline fail it instead. A task that returns forgets its count; the count of one that never
returns expires after TTL_S.
"""

from __future__ import annotations

import redis

from shared.state import keys

# Long enough for a task to come back after a long queue: it is requeued at the queue's head by a
# prefork parent, but a restored one waits behind everything queued meanwhile.
TTL_S = 7 * 24 * 3600


def count(client: redis.Redis, task_id: str, ttl_s: int = TTL_S) -> int:
    """Count one more start of task_id; returns how many times it has started, this one included."""
    key = keys.deliveries_key(task_id)
    with client.pipeline() as pipe:
        pipe.incr(key)
        pipe.expire(key, ttl_s)
        started, _ = pipe.execute()
    return int(started)


def forget(client: redis.Redis, task_id: str) -> None:
    """The task returned (done or failed with its reason): it will not come back."""
    client.delete(keys.deliveries_key(task_id))


def started(client: redis.Redis, task_id: str) -> int:
    raw = client.get(keys.deliveries_key(task_id))
    return int(raw) if raw is not None else 0
