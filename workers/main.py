"""The worker entry point: one Celery worker consuming one queue, pinning one model.

parallel 1: pool processes are Celery's prefork children: the main process stays responsive
(pings, heartbeats, Flower) while a child generates, and a killed child's task is requeued at once
(late acknowledgement + reject on worker lost).
parallel N: Celery's threads pool runs N tasks in the worker process, each handing its request to
one batching engine (llama.cpp releases the GIL while it computes). Late acknowledgement still
holds: if the process dies, its N unacknowledged tasks come back after the visibility timeout.
Celery enforces no time limits in a threads pool; the engine's time budget stops a sequence at
the soft limit instead.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import socket
import time

import psutil

from broker import connection
from broker.app import configure
from broker.queues import CPU_QUEUE, llm_queue
from shared.config import Settings
from shared.llm import memory
from shared.llm.catalog import load_fleet_catalog
from shared.state import fleet_limits
from shared.state.registry import Heartbeat, WorkerInfo
from workers import engine_holder, takeover
from workers.pool import PoolConfig
from workers.turns import step as turn_step

log = logging.getLogger(__name__)

STATES = {0: "loading", 1: "ready", -1: "failed"}


def one_thread_per_process() -> None:
    """FAISS and torch run one thread per worker process: the cores belong to the models."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"


def run(settings: Settings, model_name: str | None, threads: int | None, concurrency: int,
        loglevel: str = "INFO", nodename: str | None = None, parallel: int | None = None,
        turns: bool = False) -> None:
    one_thread_per_process()
    url, client = connection.connect(settings)  # exit 69 now rather than retry forever
    host = socket.gethostname()
    if model_name:
        model = load_fleet_catalog(settings).get(model_name)
        path = model.ensure_file(settings.models_dir)
        n_threads = threads or model.n_threads or settings.cores
        parallel = parallel or model.parallel
        memory.check_fits(model_name, path, model.n_ctx, parallel)  # one line, not swap
        config = PoolConfig(
            kind="llm", queue=llm_queue(model_name),
            nodename=_nodename(nodename, f"{model_name}-{os.getpid()}@%h", host),
            concurrency=parallel, model=model_name, model_path=str(path), n_threads=n_threads,
            parallel=parallel, turns=turns,
        )
    else:
        path = None
        memory.check_cpu_pool_fits()
        config = PoolConfig(
            kind="cpu", queue=CPU_QUEUE, nodename=_nodename(nodename, f"cpu-{os.getpid()}@%h", host),
            concurrency=concurrency,
        )
    # every worker on this Redis restores abandoned tasks after its own visibility timeout:
    # refuse limits other than the fleet's (published by its first worker), in one line
    limits = fleet_limits.of(settings)
    fleet_limits.join(client, limits, fleet_limits.ttl_for(settings.heartbeat_interval_s))
    config.export()
    app = configure(url, settings)
    # a dead worker's tasks are put back within seconds (the visibility timeout is the backstop)
    takeover.reclaim_own(app, client, config.nodename)
    takeover.record_deliveries(url, config.nodename)
    heartbeat = Heartbeat(url, _worker_info(config, path, host), settings.heartbeat_interval_s,
                          _status_reader(config), limits=limits,
                          after_beat=takeover.sweeper(app, config.nodename,
                                                      settings.heartbeat_interval_s))
    _connect_signals(config, heartbeat)
    if config.turns:
        app.steps["consumer"].add(turn_step(url, host, config.nodename, config.queue,
                                            settings.llm_task_time_limit_s))
    batching = config.parallel > 1
    if batching:  # no pool processes: the engine lives here, shared by the task threads
        engine_holder.start_loading()
    app.worker_main([
        "worker", "--queues", config.queue, "--hostname", config.nodename,
        "--concurrency", str(config.concurrency), "--pool", "threads" if batching else "prefork",
        "--loglevel", loglevel, "--without-gossip", "--without-mingle", "--events",
    ])


def _nodename(given: str | None, default: str, host: str) -> str:
    return (given or default).replace("%h", host)


def _worker_info(config: PoolConfig, path, host: str) -> WorkerInfo:
    backend = "cpu"
    if config.kind == "llm":
        from shared.llm.engine import detect_backend

        backend = detect_backend()
    return WorkerInfo(
        nodename=config.nodename, host=host, pid=os.getpid(), queues=[config.queue],
        kind=config.kind, model=config.model,
        model_file=path.name if path else None, model_size=path.stat().st_size if path else None,
        backend=backend, n_threads=config.n_threads, concurrency=config.concurrency,
        turns=config.turns,
        started_at=time.time(),
    )


def _status_reader(config: PoolConfig):
    """What the heartbeat publishes besides the worker's fixed facts: the model's state
    (written by the pool process that loads it, in shared memory) and the resident memory of
    the worker with its pool processes."""
    if config.kind == "llm":
        engine_holder.state = multiprocessing.Value("i", 0)

    def status() -> dict:
        state = (STATES.get(engine_holder.state.value, "loading") if config.kind == "llm"
                 else "ready")
        return {"state": state, "rss_bytes": _tree_rss()}

    return status


def _tree_rss() -> int | None:
    try:
        me = psutil.Process()
        return sum(p.memory_info().rss for p in [me, *me.children(recursive=True)])
    except psutil.Error:
        return None


def _connect_signals(config: PoolConfig, heartbeat: Heartbeat) -> None:
    from celery import signals

    @signals.worker_ready.connect(weak=False)
    def _ready(**_):
        heartbeat.start()

    # after the pool stopped: a worker finishing its tasks in a warm shutdown stays registered,
    # so no sweep takes them from it
    @signals.worker_shutdown.connect(weak=False)
    def _shut_down(**_):
        heartbeat.stop()
        takeover.release(heartbeat.client, config.nodename)

    @signals.worker_process_init.connect(weak=False)  # prefork children only
    def _process_init(**_):
        if config.kind == "llm":
            engine_holder.start_loading()
        else:
            from shared.retrieval.embeddings import preload_in_background

            preload_in_background()
