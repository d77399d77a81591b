"""One Redis client per worker process for ragfleet's own data (bytes in, bytes out)."""

from __future__ import annotations

from functools import lru_cache

import redis

from broker.app import app


@lru_cache(maxsize=1)
def get() -> redis.Redis:
    # retry_on_timeout and the health check ride out a Redis restart between tasks
    return redis.Redis.from_url(app.conf.broker_url, socket_timeout=30, socket_connect_timeout=10,
                                retry_on_timeout=True, health_check_interval=30)
