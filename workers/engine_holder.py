"""One engine per pool process, loaded once: in a background thread started when the process
starts (Celery kills `worker_process_init` handlers after 4 s, a model takes longer), awaited by
the first task. A load failure is kept and reported by every task instead of retried forever.

parallel 1: the single-stream engine in the prefork child. parallel N: one batching engine in the
worker process, shared by the N task threads of Celery's threads pool."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from shared.config import get_settings
from shared.llm.batched_engine import BatchedEngine
from shared.llm.catalog import load_fleet_catalog
from shared.llm.engine import Engine
from shared.llm.llama_engine import LlamaEngine
from workers import pool

log = logging.getLogger(__name__)

# Shared with the worker's main process (created before the fork): 0 loading, 1 ready, -1 failed.
state = None
_engine: Engine | None = None
_error: BaseException | None = None
_loaded = threading.Event()


def _load() -> None:
    global _engine, _error
    config = pool.current()
    try:
        model = load_fleet_catalog(get_settings()).get(config.model)
        if config.parallel > 1:
            _engine = BatchedEngine(model, Path(config.model_path), config.n_threads or 1,
                                    config.parallel, unified_kv=model.kv_unified)
        else:
            _engine = LlamaEngine(model, Path(config.model_path), config.n_threads or 1)
        if state is not None:
            state.value = 1
    except BaseException as exc:  # kept and re-raised in every task
        _error = exc
        log.error("model %s failed to load: %s", config.model, exc)
        if state is not None:
            state.value = -1
    finally:
        _loaded.set()


def start_loading() -> None:
    if state is not None:
        state.value = 0
    threading.Thread(target=_load, name="model-loader", daemon=True).start()


def get() -> Engine:
    _loaded.wait()
    if _error is not None:
        raise _error
    assert _engine is not None
    return _engine
