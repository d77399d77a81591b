"""Questions per minute of one model pool against two pools of the same model on this machine,
with different llama.cpp thread counts, so the catalog's thread budget is chosen from data.

    .venv/bin/python -m benchmarks.bench_throughput [--questions 8] [--max-tokens 48]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import machine
from benchmarks.bench_overhead import MODEL, PDF, QUESTIONS, ragfleet
from shared.config import PROJECT_ROOT


def configs(cores: int) -> list[tuple[int, int]]:
    """(pools, threads per pool): the budget `up` picks, and the oversubscribed alternative."""
    return [(1, cores), (2, max(1, cores // 2)), (2, cores)]


def run_config(env: dict, pools: int, threads: int, questions: Path, max_tokens: int,
               logs: Path) -> dict:
    ragfleet(env, "up", "--model", MODEL, "--threads", str(threads))
    extra = []
    try:
        for i in range(pools - 1):
            log = (logs / f"extra-{pools}-{threads}-{i}.log").open("ab")
            extra.append(subprocess.Popen(
                [sys.executable, "-m", "producer.cli", "worker", "--model", MODEL, "--threads",
                 str(threads)], env=env, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True))
        _wait_pools(env, pools)
        started = time.perf_counter()
        summary = json.loads(ragfleet(env, "ask", str(questions), "-c", "bench", "-m", MODEL,
                                      "--max-tokens", str(max_tokens), "--temperature", "0",
                                      "--wait", "--json"))
        wall = time.perf_counter() - started
        report = json.loads(ragfleet(env, "results", summary["batch"], "--format", "json"))
    finally:
        for proc in extra:
            os.killpg(proc.pid, 15)
            proc.wait(timeout=60)
        ragfleet(env, "down")
    tokens = sum(r["completion_tokens"] for r in report["results"])
    return {"pools": pools, "threads_per_pool": threads, "questions": summary["total"],
            "wall_s": wall, "questions_per_minute": 60 * summary["total"] / wall,
            "completion_tokens_per_s": tokens / wall,
            "median_response_s": report["summary"][0]["latency_p50_s"]}


def _wait_pools(env: dict, pools: int, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = json.loads(ragfleet(env, "status", "--json"))
        pool = next(p for p in state["pools"] if p["model"] == MODEL)
        if pool["workers"] >= pools and pool["state"] == "ready":
            return
        time.sleep(1)
    raise SystemExit(f"{pools} pools did not come up")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--questions", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=48)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("RAGFLEET_") and k != "REDIS_URL"}
        env["RAGFLEET_DATA_DIR"] = str(Path(tmp) / "data")
        subset = Path(tmp) / "questions.jsonl"
        subset.write_text("\n".join(QUESTIONS.read_text().splitlines()[:args.questions]) + "\n")
        ragfleet(env, "up", "--model", MODEL)
        ragfleet(env, "ingest", str(PDF), "-c", "bench", "--wait")
        ragfleet(env, "down")  # the collection stays in the append-only file
        rows = [run_config(env, pools, threads, subset, args.max_tokens, Path(tmp))
                for pools, threads in configs(cores)]
    base = rows[0]["questions_per_minute"]
    for row in rows:
        row["ratio_vs_one_pool"] = row["questions_per_minute"] / base
        print(f"{row['pools']} pool(s) x {row['threads_per_pool']} threads: "
              f"{row['questions_per_minute']:.1f} questions/min ({row['ratio_vs_one_pool']:.2f}x)")
    machine.write("throughput", {
        "model": MODEL, "cores": cores, "max_tokens": args.max_tokens, "configs": rows,
        "command": ".venv/bin/python -m benchmarks.bench_throughput",
    })


if __name__ == "__main__":
    main()
