"""The soak's fleet on two hosts: Redis on this host's end of the veth pair (with a password,
as beyond loopback it must be), a cpu pool and a SmolLM2 pool here, a SmolLM2 pool on the
second host (benchmarks.netns); the questions it is asked."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import redis

from benchmarks import netns
from benchmarks.bench_overhead import MODEL, fleet_env, ragfleet
from broker import connection, embedded_redis, processes
from shared.config import PROJECT_ROOT, Settings
from shared.state import batch_store
from shared.state.registry import live_workers

NORTHWIND = PROJECT_ROOT / "data" / "northwind"
PDFS = (NORTHWIND / "Northwind_Standard_Benefits_Details.pdf",
        NORTHWIND / "Northwind_Health_Plus_Benefits_Details.pdf")
# Identical texts are answered once for all their ids: the second 50 are reworded to be asked.
REWORDINGS = ("", " Answer in one sentence.", " Quote the plan if you can.", " Be brief.")


def questions(n: int) -> list[dict]:
    rows = [json.loads(line) for line in
            (NORTHWIND / "ground_truth.jsonl").read_text().splitlines() if line.strip()]
    if n > len(rows) * len(REWORDINGS):
        raise SystemExit(f"at most {len(rows) * len(REWORDINGS)} distinct questions")
    return [{"id": f"soak-{i + 1:03d}",
             "question": rows[i % len(rows)]["question"] + REWORDINGS[i // len(rows)],
             "reference": rows[i % len(rows)]["truth"]} for i in range(n)]


class Fleet:
    """The processes of the soak, each started in its own session (a signal reaches only it)."""

    def __init__(self, folder: Path, host: netns.SecondHost):
        self.folder, self.host = folder, host
        self.settings = Settings(data_dir=folder / "data", redis_bind=host.host_ip,
                                 redis_password=secrets.token_urlsafe(24))
        self.redis = embedded_redis.start(self.settings)  # kept: stopped even if its record is not
        self.url = self.redis.info["url"]
        # the storm kills busy pool processes on purpose: the same question may be hit three
        # times, which the poison limit (3) would fail; that limit has tests of its own
        # The storm fires its faults as results are stored (soak.Storm: at 15/30/45% stored,
        # each after a result since the last fault), so results must come as answers do:
        # scoring that waits for the pools would store them only after the last answer, when
        # no pool is left busy to kill. The faults are about delivery, not about scoring.
        self.env = {**fleet_env(folder / "data"), "REDIS_URL": self.url,
                    "RAGFLEET_MAX_DELIVERIES": "10", "RAGFLEET_SCORE_WAITS_FOR_POOLS": "0"}
        self.client = connection.client(self.url, patient=True)
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, list[Path]] = {}

    def start(self, label: str, *args: str) -> subprocess.Popen:
        log = self.folder / f"{label}-{len(self.logs.get(label, []))}.log"
        cmd = [sys.executable, "-m", "producer.cli", "worker", *args]
        if label == "host2":
            cmd = self.host.exec_prefix() + cmd
        with log.open("ab") as out:
            proc = subprocess.Popen(cmd, env=self.env, cwd=PROJECT_ROOT, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[label] = proc
        self.logs.setdefault(label, []).append(log)
        return proc

    def start_pool(self, label: str) -> subprocess.Popen:
        name = ["--name", f"{MODEL}-host2@%h"] if label == "host2" else []
        return self.start(label, "--model", MODEL, "--threads", "1", *name)

    def ready(self, proc: subprocess.Popen) -> bool:
        states = [w["state"] for w in live_workers(self.client) if w["pid"] == proc.pid]
        if "failed" in states or proc.poll() is not None:
            raise RuntimeError(f"worker {proc.pid} failed to start: see {self.folder}")
        return "ready" in states

    def wait_ready(self, timeout_s: float = 300) -> None:
        deadline = time.monotonic() + timeout_s
        while not all(self.ready(p) for p in self.procs.values()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the pools did not come up in {timeout_s:.0f} s")
            time.sleep(0.5)

    def busy_child(self, label: str) -> psutil.Process | None:
        """The pool process, if it is generating: it used a tenth of a core or more over 0.3 s
        (an idle one, its model loaded, uses none)."""
        try:
            child = psutil.Process(self.procs[label].pid).children()[0]
            before = sum(child.cpu_times()[:2])
            time.sleep(0.3)
            return child if sum(child.cpu_times()[:2]) - before >= 0.03 else None
        except (IndexError, psutil.Error):
            return None

    def close(self) -> None:
        for proc in self.procs.values():  # the storm is over: no task of theirs matters
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=30)
        processes.stop(self.redis, grace_s=10)


def ask(fleet: Fleet, rows: list[dict], max_tokens: int) -> str:
    path = fleet.folder / f"questions-{time.monotonic_ns()}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = ragfleet(fleet.env, "ask", str(path), "-c", "soak", "-m", MODEL, "--max-tokens",
                   str(max_tokens), "--temperature", "0", "--no-wait", "--json")
    return json.loads(out)["batch"]


def finished(fleet: Fleet, batch_id: str) -> bool:
    try:
        return batch_store.status(fleet.client, batch_id) in batch_store.FINISHED
    except redis.exceptions.RedisError:
        return False
