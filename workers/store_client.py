"""One Redis client per worker process for ragfleet's own data (bytes in, bytes out)."""

from __future__ import annotations

from functools import lru_cache

import redis

from broker import connection
from broker.app import app


@lru_cache(maxsize=1)
def get() -> redis.Redis:
    # patient: a task that meets a Redis restart waits for it instead of failing
    return connection.client(app.conf.broker_url, timeout_s=30, patient=True, decode=False)
