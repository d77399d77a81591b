"""CPU-pool tasks: ingestion, retrieval and scoring land here (issues to come)."""

from __future__ import annotations

import os
import socket

from broker.app import app
from broker.queues import PING_TASK
from workers import pool


@app.task(name=PING_TASK)
def ping() -> dict:
    """Round trip through the `cpu` queue: which worker and process answered."""
    return {"worker": pool.current().nodename, "host": socket.gethostname(), "pid": os.getpid()}
