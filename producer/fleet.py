"""Start, inspect and stop the fleet of this data directory: embedded Redis, worker pools, Flower."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

import psutil
import redis

from broker import connection, embedded_redis, processes
from broker.queues import CPU_QUEUE, llm_queue, model_of_queue
from producer import flower
from shared.config import Settings
from shared.errors import RagfleetError, UsageError
from shared.llm import memory
from shared.llm.catalog import Catalog, pool_threads
from shared.state import fleet_limits
from shared.state.registry import live_workers
from shared.state.turns import holder as turn_holder

# a stopping pool's running task ends by itself within its hard time limit; this much more
# lets Celery record it, acknowledge it and exit
WORKER_STOP_MARGIN_S = 30.0


def worker_stop_grace_s(settings: Settings) -> float:
    """How long `down` lets pools finish their running tasks before cancelling them."""
    return settings.longest_task_s + WORKER_STOP_MARGIN_S


@dataclass
class PoolPlan:
    name: str  # record name: "cpu" or the model name
    argv: list[str]
    queue: str
    model: str | None
    memory_bytes: int  # estimated: model, KV cache and runtime, or the embedder
    estimate: memory.MemoryEstimate | None = None  # a model pool's, for the message
    n_ctx: int = 0
    parallel: int = 1


def pool_record_name(model: str | None) -> str:
    return "pool-cpu" if model is None else f"pool-{model}"


def ensure_data_dir(settings: Settings) -> None:
    try:
        # mode 0700: the run records, the Redis password and its data are this user's only
        for d in (settings.data_path, settings.run_dir, settings.log_dir):
            processes.private_dir(d)
        probe = settings.run_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UsageError(
            f"data directory {settings.data_path} is not writable: {exc.strerror}") from None


# The cpu pool's processes: while one runs an ingestion (minutes), the other goes on retrieving
# and scoring for the running batches, which would otherwise queue behind it (both fit in
# memory.CPU_POOL_BYTES: about 0.25 GB each with the ONNX embedder).
CPU_POOL_PROCESSES = 2


def default_models(catalog: Catalog, settings: Settings) -> list[str]:
    return [m.name for m in catalog.models.values() if m.usable(settings.models_dir)]


def takes_turns(models: list[str], turns: bool | None) -> bool:
    """Pools of several models on one host take turns unless told otherwise: a comparison's
    figures are then each model's own, with every core (concurrent pools share the cores and
    suit throughput, not measurement)."""
    return len(models) > 1 if turns is None else turns


def plan_pools(catalog: Catalog, settings: Settings, models: list[str],
               threads: int | None, parallel: int | None = None,
               turns: bool = False) -> list[PoolPlan]:
    """Check every model first (unknown name, missing or broken file), then plan the pools with
    their estimated memory. Pools taking turns each get every core, as one runs at a time."""
    paths = {name: catalog.get(name).ensure_file(settings.models_dir) for name in models}
    worker = [sys.executable, "-m", "producer.cli", "worker"]
    plans = [PoolPlan("pool-cpu", worker + ["--cpu", "--concurrency", str(CPU_POOL_PROCESSES)],
                      CPU_QUEUE, None, memory.CPU_POOL_BYTES)]
    for name in models:
        model = catalog.get(name)
        n = pool_threads(model, settings.cores, 1 if turns else len(models), threads)
        argv = worker + ["--model", name, "--threads", str(n)]
        if parallel:
            argv += ["--parallel", str(parallel)]
        if turns:
            argv.append("--turns")
        n_parallel = parallel or model.parallel
        need = memory.estimate_or_size(paths[name], model.n_ctx, n_parallel)
        plans.append(PoolPlan(pool_record_name(name), argv, llm_queue(name), name, need.total,
                              need, model.n_ctx, n_parallel))
    return plans


def check_memory(settings: Settings, plans: list[PoolPlan]) -> None:
    """The pools `up` would start must fit the available memory together: each is refused in
    one line rather than pushed into swap or killed mid-batch. Pools already running have
    their memory taken already."""
    available = psutil.virtual_memory().available
    for plan in plans:
        running = processes.load_record(settings.run_dir, plan.name)
        if running and running.alive():
            continue
        if plan.memory_bytes > available:
            if plan.estimate is None:
                raise UsageError(f"the cpu pool (embedder) needs about "
                                 f"{plan.memory_bytes / 2**30:.1f} GB but only "
                                 f"{max(0, available) / 2**30:.1f} GB is left for it")
            raise UsageError(memory.shortfall(plan.model, plan.estimate, plan.n_ctx,
                                              plan.parallel, available))
        available -= plan.memory_bytes


def check_fleet_limits(settings: Settings, client: redis.Redis, plans: list[PoolPlan]) -> None:
    """Pools about to start must use the limits the fleet on this Redis published (workers on
    other machines may share it); refused in one line, before anything starts."""
    if all((r := processes.load_record(settings.run_dir, p.name)) and r.alive() for p in plans):
        return  # nothing to start
    fleet_limits.check(fleet_limits.of(settings), fleet_limits.published(client))


def start_pools(settings: Settings, url: str, plans: list[PoolPlan]) -> list[processes.ProcessRecord]:
    """Spawn the pools not already running; return the records of all of them."""
    env = {**os.environ, "REDIS_URL": url, "RAGFLEET_DATA_DIR": str(settings.data_path)}
    records = []
    for plan in plans:
        current = processes.load_record(settings.run_dir, plan.name)
        if current and current.alive():
            records.append(current)
            continue
        record = processes.spawn(plan.name, plan.argv, settings.log_dir / f"{plan.name}.log", env,
                                 info={"queue": plan.queue, "model": plan.model})
        processes.save_record(settings.run_dir, record)
        records.append(record)
    return records


def wait_ready(settings: Settings, client: redis.Redis,
               records: list[processes.ProcessRecord]) -> None:
    """Until each started pool's worker is in the registry with its model loaded."""
    deadline = time.monotonic() + settings.ready_timeout_s
    pending = {r.pid: r for r in records}
    while pending:
        by_pid = {w["pid"]: w for w in live_workers(client)}
        for pid, record in list(pending.items()):
            worker = by_pid.get(pid)
            if worker and worker.get("state") == "ready":
                del pending[pid]
            elif worker and worker.get("state") == "failed":
                raise RagfleetError(f"{record.name}: the model failed to load; see {record.log}")
            elif not record.alive():
                last = processes.tail(record.log, 1) or "no output"
                raise RagfleetError(f"{record.name} exited at start: {last} (log: {record.log})")
        if pending and time.monotonic() > deadline:
            names = ", ".join(r.name for r in pending.values())
            raise RagfleetError(f"not ready after {settings.ready_timeout_s:.0f} s: {names}")
        time.sleep(0.25)


def up(settings: Settings, catalog: Catalog, models: list[str] | None, threads: int | None,
       with_flower: bool, say=lambda message: None, parallel: int | None = None,
       turns: bool | None = None) -> None:
    ensure_data_dir(settings)
    models = models or default_models(catalog, settings)
    turns = takes_turns(models, turns)
    # validate before starting
    plans = plan_pools(catalog, settings, models, threads, parallel, turns)
    check_memory(settings, plans)
    say(f"starting the fleet in {settings.data_path}: pools cpu, {', '.join(models)}"
        + (" (the model pools take turns)" if turns else "") + " ...")
    if not settings.redis_url:
        embedded_redis.start(settings)
    url, client = connection.connect(settings)
    check_fleet_limits(settings, client, plans)
    records = start_pools(settings, url, plans)
    if with_flower:
        flower.start(settings, url)
    wait_ready(settings, client, records)


def down(settings: Settings, grace_s: float | None = None,
         say=lambda message: None) -> list[str]:
    """Stop what `up` started here: pools first, then Flower, then Redis. Returns the names of
    what was stopped. Pools shut down warm (processes.stop_workers): each finishes its running
    tasks, for up to grace_s (default: the longest task time limit plus a margin, so a task
    ends by itself or by its own limit); a pool still running then is shut down cold, its
    running tasks given back to the queue to run again."""
    grace = worker_stop_grace_s(settings) if grace_s is None else grace_s
    records = [r for r in processes.load_records(settings.run_dir)
               if r.name != embedded_redis.RECORD_NAME]
    pools = [r for r in records if r.name.startswith("pool-")]
    how = processes.stop_workers(
        pools, grace, on_wait=lambda names: say(
            f"waiting for {', '.join(names)} to finish the running tasks (up to {grace:.0f} s; "
            "`ragfleet down --grace SECONDS` cuts it short)"))
    for name, ended in how.items():
        if ended in ("cold", "killed"):
            say(f"{name} did not finish within {grace:.0f} s: its running tasks were given back "
                "to the queue" + (" (after the visibility timeout)" if ended == "killed" else ""))
    stopped = [r.name for r in pools if how[r.name] != "gone"]
    for record in records:
        if record not in pools and record.alive():
            processes.stop(record, 10.0)
            stopped.append(record.name)
        processes.remove_record(settings.run_dir, record.name)
    if embedded_redis.stop(settings):
        stopped.append(embedded_redis.RECORD_NAME)
    return stopped


def _turn_of(client: redis.Redis, online: list[dict], queued: int) -> str | None:
    """For pools taking turns: whether one of its workers holds its host's turn now."""
    if not any(w.get("turns") for w in online):
        return None
    if any(turn_holder(client, w["host"]) == w["nodename"] for w in online):
        return "its turn"
    return "waiting" if queued else "idle"


def status(settings: Settings) -> dict:
    url, client = connection.connect(settings)
    workers = live_workers(client)
    records = {r.name: r for r in processes.load_records(settings.run_dir)}
    queues = {CPU_QUEUE} | {q for w in workers for q in w["queues"]}
    queues |= {r.info["queue"] for r in records.values() if r.info.get("queue")}
    pools = []
    for queue in sorted(queues, key=lambda q: (q != CPU_QUEUE, q)):
        model = model_of_queue(queue)
        online = [w for w in workers if queue in w["queues"]]
        record = records.get(pool_record_name(model))
        first = online[0] if online else {}
        pools.append({
            "model": model or "cpu",
            "queue": queue,
            "workers": len(online),
            "pids": record.pids() if record else [],
            "state": first.get("state", "offline") if online else "offline",
            "backend": first.get("backend"),
            "n_threads": first.get("n_threads"),
            "parallel": first.get("concurrency") if model else None,
            "model_file": first.get("model_file"),
            "model_size": first.get("model_size"),
            # resident memory of the pool's workers with their pool processes, all hosts
            "rss_bytes": sum(w.get("rss_bytes") or 0 for w in online) or None,
            "hosts": sorted({w["host"] for w in online}),
            "queued": (queued := client.llen(queue)),
            "turn": _turn_of(client, online, queued),
        })
    memory = client.info("memory").get("used_memory")
    return {
        "redis": {
            "url": connection.redact(url),
            "embedded": not settings.redis_url,
            "healthy": True,
            "used_memory": memory,
        },
        "data_dir": str(settings.data_path),
        "pools": pools,
        "flower": flower.describe(settings),
    }
