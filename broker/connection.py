"""Which Redis to talk to, and a clear error when it cannot be reached."""

from __future__ import annotations

import re

import redis

from broker import embedded_redis
from shared.config import Settings
from shared.errors import BrokerUnavailable


def redact(url: str) -> str:
    """The URL without its password, for messages and status output."""
    return re.sub(r"//([^:@/]*):[^@/]*@", r"//\1:***@", url)


def resolve_url(settings: Settings) -> str:
    """REDIS_URL when set, else the URL of this data directory's embedded Redis."""
    if settings.redis_url:
        return settings.redis_url
    record = embedded_redis.running(settings)
    if record is None:
        raise BrokerUnavailable(
            f"no Redis: the embedded Redis of {settings.data_path} is not running "
            "(run `ragfleet up`, or set REDIS_URL)"
        )
    return record.info["url"]


def client(url: str, timeout_s: float = 5.0) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=timeout_s,
        socket_timeout=timeout_s,
        decode_responses=True,
        health_check_interval=30,
    )


def connect(settings: Settings, timeout_s: float = 5.0) -> tuple[str, redis.Redis]:
    """Resolve and ping: returns (url, client) or raises BrokerUnavailable (exit 69)."""
    url = resolve_url(settings)
    try:
        conn = client(url, timeout_s)
        conn.ping()
    except redis.exceptions.AuthenticationError as exc:
        raise BrokerUnavailable(f"Redis at {redact(url)} refused the password: {exc}") from None
    except redis.exceptions.RedisError as exc:
        raise BrokerUnavailable(f"cannot reach Redis at {redact(url)}: {exc}") from None
    except ValueError as exc:  # a malformed URL
        raise BrokerUnavailable(f"bad Redis URL {redact(url)}: {exc}") from None
    return url, conn
