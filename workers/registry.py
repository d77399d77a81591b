"""The worker registry: each live worker keeps one Redis entry fresh; a dead one's entry expires.

`ragfleet status` and `up` read it to see which pools are online, on which backend, with which
model file, and whether the model has loaded, on this machine or any other.
"""

from __future__ import annotations

import json
import logging
import threading

import redis

from broker import keys
from shared.schemas import WorkerInfo

log = logging.getLogger(__name__)


class Heartbeat:
    """A daemon thread writing `info` (plus the model state) every `interval_s` seconds."""

    def __init__(self, url: str, info: WorkerInfo, interval_s: float, state_of=lambda: "ready"):
        self.client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self.info = info
        self.interval_s = interval_s
        self.state_of = state_of
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="registry-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def beat(self) -> None:
        entry = {**self.info.model_dump(), "state": self.state_of()}
        ttl = max(1, int(self.interval_s * 3))
        self.client.set(keys.worker_key(self.info.nodename), json.dumps(entry), ex=ttl)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.beat()
            except redis.exceptions.RedisError as exc:  # Redis restarting: try again next beat
                log.warning("registry heartbeat failed: %s", exc)
            self._stop.wait(self.interval_s)

    def stop(self) -> None:
        self._stop.set()
        try:
            self.client.delete(keys.worker_key(self.info.nodename))
        except redis.exceptions.RedisError:
            pass


def live_workers(client: redis.Redis) -> list[dict]:
    """Every registry entry that has not expired."""
    names = sorted(client.scan_iter(match=keys.worker_pattern(), count=500))
    if not names:
        return []
    entries = client.mget(names)
    return [json.loads(e) for e in entries if e]
