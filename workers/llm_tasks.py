"""Model-pool tasks: unpack, call the engine, return. Routed to `llm.<model>` by the producer."""

from __future__ import annotations

import socket

from broker.app import app
from broker.queues import GENERATE_TASK
from shared.errors import UsageError
from shared.schemas import GenerationRequest
from workers import engine_holder, pool


@app.task(name=GENERATE_TASK)
def generate(request: dict) -> dict:
    """One chat request through this pool's model: the text, token counts and timings."""
    req = GenerationRequest.model_validate(request)
    engine = engine_holder.get()
    if req.model != engine.model.name:
        raise UsageError(f"request for {req.model!r} reached the pool of {engine.model.name!r}")
    result = engine.generate(req)
    return {
        **result.model_dump(),
        "model": engine.model.name,
        "model_file": engine.path.name,
        "model_size": engine.path.stat().st_size,
        "backend": engine.backend,
        "worker": pool.current().nodename,
        "host": socket.gethostname(),
    }
