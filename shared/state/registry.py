"""The worker registry: each live worker keeps one Redis entry fresh; a dead one's entry expires.

`ragfleet status` and `up` read it to see which pools are online, on which backend, with which
model file, and whether the model has loaded, on this machine or any other.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time

import redis
from pydantic import BaseModel, Field

from shared.state import fleet_limits, keys

log = logging.getLogger(__name__)


class WorkerInfo(BaseModel):
    """What a live worker says about itself in the registry (refreshed by its heartbeat)."""

    nodename: str
    host: str
    pid: int
    queues: list[str]
    kind: str = Field(description="'llm' or 'cpu'")
    model: str | None = None
    model_file: str | None = None
    model_size: int | None = None
    backend: str = "cpu"
    n_threads: int | None = None
    concurrency: int = 1
    turns: bool = Field(default=False, description="takes turns with the host's other pools")
    started_at: float


def publish(client: redis.Redis, info: WorkerInfo, status: dict, ttl_s: int) -> None:
    """Write (or refresh) a worker's entry with its changing status (state: loading, ready or
    failed; memory); it expires ttl_s after the last refresh."""
    entry = {**info.model_dump(), **status}
    client.set(keys.worker_key(info.nodename), json.dumps(entry), ex=max(1, ttl_s))


def withdraw(client: redis.Redis, nodename: str) -> None:
    client.delete(keys.worker_key(nodename))


@contextlib.contextmanager
def generating(client: redis.Redis, host: str, task_id: str, ttl_s: int):
    """Mark a model pool of `host` as generating while the block runs (the mark expires after
    ttl_s should the process die): the cpu pool's embedder leaves the cores to it meanwhile."""
    key, ttl_s = keys.generating_key(host), max(1, ttl_s)
    try:
        with client.pipeline() as pipe:
            pipe.zadd(key, {task_id: time.time() + ttl_s})
            pipe.expire(key, ttl_s)  # every mark has the same lifetime: the newest lasts longest
            pipe.zremrangebyscore(key, "-inf", time.time())  # marks of dead processes
            pipe.execute()
    except redis.exceptions.RedisError as exc:  # a hint for the embedder, never a failure
        log.warning("could not mark %s as generating: %s", task_id, exc)
    try:
        yield
    finally:
        try:
            client.zrem(key, task_id)
        except redis.exceptions.RedisError:
            pass  # it lapses


def this_machine() -> str:
    """The machine whose cores this process shares with model pools (`generating` marks are
    per machine): the `machine` setting, else the host name."""
    from shared.config import get_settings

    return get_settings().machine or socket.gethostname()


def generating_on(client: redis.Redis, host: str) -> int:
    """How many answers the model pools of `host` are generating now (one round trip: the
    embedder asks before each batch)."""
    return int(client.zcount(keys.generating_key(host), time.time(), "+inf"))


def live_workers(client: redis.Redis) -> list[dict]:
    """Every registry entry that has not expired."""
    names = sorted(client.scan_iter(match=keys.worker_pattern(), count=500))
    if not names:
        return []
    entries = client.mget(names)
    return [json.loads(e) for e in entries if e]


class Heartbeat:
    """A daemon thread publishing `info` (plus what `status_of` says now: the model's state,
    memory) every `interval_s` seconds, then calling `after_beat`; the entry lives three
    intervals, so a worker that dies drops out within that. `limits`: the fleet's limits this
    worker runs with, kept published (state.fleet_limits) while it lives, withdrawn when it is
    the last worker to stop."""

    def __init__(self, url: str, info: WorkerInfo, interval_s: float,
                 status_of=lambda: {"state": "ready"}, limits: dict[str, int] | None = None,
                 after_beat=None):
        self.client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self.info = info
        self.interval_s = interval_s
        self.status_of = status_of
        self.limits = limits
        self.after_beat = after_beat  # called with the client after each beat (the sweep)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="registry-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def beat(self) -> None:
        publish(self.client, self.info, self.status_of(), int(self.interval_s * 3))
        if self.limits:
            fleet_limits.refresh(self.client, self.limits, fleet_limits.ttl_for(self.interval_s))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.beat()
                if self.after_beat:
                    self.after_beat(self.client)
            except redis.exceptions.RedisError as exc:  # Redis restarting: try again next beat
                log.warning("registry heartbeat failed: %s", exc)
            except Exception:  # the beat must go on whatever the sweep met
                log.exception("after the registry heartbeat")
            self._stop.wait(self.interval_s)

    def stop(self) -> None:
        self._stop.set()
        try:
            withdraw(self.client, self.info.nodename)
            if self.limits and not live_workers(self.client):
                fleet_limits.withdraw(self.client)
        except redis.exceptions.RedisError:
            pass
