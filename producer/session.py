"""The one way a command reaches the fleet: settings, the Redis URL, a patient client, and a
fresh Celery app for sending (so a process that talks to two fleets never mixes them up)."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from celery import Celery

from broker import connection
from broker.app import sender
from shared.config import Settings, load_settings


@dataclass(frozen=True)
class Session:
    settings: Settings
    url: str
    client: redis.Redis  # str replies; rides out a Redis restart

    def sender(self) -> Celery:
        return sender(self.url, self.settings)


def connect(settings: Settings | None = None) -> Session:
    """Resolve and ping Redis (BrokerUnavailable, exit 69, when it cannot be reached)."""
    settings = settings or load_settings()
    url, _ = connection.connect(settings)
    return Session(settings, url, connection.client(url, timeout_s=30, patient=True))
