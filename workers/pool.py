"""What this worker process pins: set by the entry point before Celery forks its pool processes,
inherited by them through the environment."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

ENV_VAR = "RAGFLEET_POOL"


@dataclass(frozen=True)
class PoolConfig:
    kind: str  # "llm" or "cpu"
    queue: str
    nodename: str
    concurrency: int = 1
    model: str | None = None
    model_path: str | None = None
    n_threads: int | None = None
    parallel: int = 1  # > 1: one batching engine, Celery's threads pool with this many tasks
    turns: bool = False  # consume only during the host's turn (workers/turns.py)

    def export(self) -> None:
        os.environ[ENV_VAR] = json.dumps(asdict(self))


def current() -> PoolConfig:
    raw = os.environ.get(ENV_VAR)
    if not raw:
        raise RuntimeError("not inside a ragfleet worker: start it with `ragfleet worker`")
    return PoolConfig(**json.loads(raw))
