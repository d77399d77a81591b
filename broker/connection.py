"""Which Redis to talk to, and a clear error when it cannot be reached."""

from __future__ import annotations

import re

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from broker import embedded_redis
from shared.config import Settings
from shared.errors import BrokerUnavailable


def redact(url: str) -> str:
    """The URL without its password, for messages and status output. The credentials end at
    the last '@' (a password may hold '@' or '/'); the user name is kept."""
    return re.sub(r"^([a-z][a-z0-9+.-]*://)([^:@/]*):.*@(?=[^@]*$)", r"\1\2:***@", url,
                  flags=re.IGNORECASE)


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


def client(url: str, timeout_s: float = 5.0, patient: bool = False,
           decode: bool = True) -> redis.Redis:
    """A Redis client. A patient one rides out a Redis restart: it retries a failed command with
    exponential backoff for about two minutes before giving up."""
    retry = Retry(ExponentialBackoff(cap=5.0, base=0.2), retries=30 if patient else 0)
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=timeout_s,
        socket_timeout=timeout_s,
        decode_responses=decode,
        health_check_interval=30,
        retry=retry,
        retry_on_error=[redis.exceptions.ConnectionError, redis.exceptions.TimeoutError],
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
