"""What sharing the machine costs each model: a 1.5B pool and a 135M pool answering one batch
on one host, taking turns (each alone with every core) against running concurrently with the
cores split between them, and concurrently with every core each (oversubscribed).

Same data directory, collection and questions in every mode; the pools are restarted per mode.
Per model and mode: seconds per answer (the model's response time), time to first token and
decoding speed, p50; the batch's wall time. Ratios against taking turns (the model alone) in
the same run. Writes benchmarks/results/turns.json.

    python -m benchmarks.bench_turns [--questions 6] [--max-tokens 128] [--docs galaxy-s10]
        [--models qwen2.5-coder-1.5b,smollm2-135m]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks import machine
from benchmarks.bench_overhead import PROJECT_ROOT, fleet_env, ragfleet
from benchmarks.bench_study import DOCS, questions_file
from broker import connection
from shared.config import Settings
from shared.state import batch_store

MODELS = "qwen2.5-coder-1.5b,smollm2-135m"


def modes(cores: int) -> dict[str, list[str]]:
    """`up` arguments per mode: threads as `up` chooses them, or as given."""
    return {
        "turns": ["--turns"],  # each pool: every core, one generating at a time
        "concurrent_split": ["--concurrent"],  # cores // pools each
        "concurrent_oversubscribed": ["--concurrent", "--threads", str(cores)],
    }


def per_model(rows: list[dict], model: str) -> dict:
    mine = [r for r in rows if r["model"] == model and r.get("response_s")]
    return {
        "answers": len(mine),
        "response_s_p50": round(machine.percentile([r["response_s"] for r in mine], 50), 2),
        "ttft_s_p50": round(machine.percentile([r["ttft_s"] for r in mine], 50), 2),
        "tokens_per_s_p50": round(machine.percentile(
            [r["tokens_per_s"] for r in mine if r.get("tokens_per_s")], 50), 2),
        "completion_tokens_mean": round(
            sum(r.get("completion_tokens") or 0 for r in mine) / max(1, len(mine)), 1),
    }


def run_mode(env: dict, data_dir: Path, models: list[str], up_args: list[str],
             questions: Path, collection: str, max_tokens: int) -> dict:
    ragfleet(env, "up", *[a for m in models for a in ("--model", m)], *up_args)
    try:
        status = json.loads(ragfleet(env, "status", "--json"))
        threads = {p["model"]: p["n_threads"] for p in status["pools"] if p["model"] in models}
        started = time.perf_counter()
        summary = json.loads(ragfleet(
            env, "ask", str(questions), "-c", collection, *[a for m in models for a in ("-m", m)],
            "--max-tokens", str(max_tokens), "--top-k", "4", "--temperature", "0",
            "--wait", "--json"))
        wall = time.perf_counter() - started
        _, client = connection.connect(Settings(data_dir=data_dir))
        rows = batch_store.results(client, summary["batch"])
    finally:
        ragfleet(env, "down")
    return {"threads": threads, "batch_wall_s": round(wall, 1),
            "models": {m: per_model(rows, m) for m in models}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=6)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--docs", choices=sorted(DOCS), default="galaxy-s10")
    parser.add_argument("--models", default=MODELS)
    args = parser.parse_args()
    models = args.models.split(",")
    cores = os.cpu_count() or 1
    data_dir = PROJECT_ROOT / ".ragfleet" / "bench-turns"
    shutil.rmtree(data_dir, ignore_errors=True)
    env = fleet_env(data_dir)
    with tempfile.TemporaryDirectory() as tmp:
        questions = Path(tmp) / "questions.jsonl"
        n = questions_file(DOCS[args.docs], args.questions, questions)
        ragfleet(env, "up", "--model", models[-1])  # ingest once; the collection persists
        try:
            ragfleet(env, "ingest", *map(str, sorted(DOCS[args.docs].glob("*.pdf"))),
                     "-c", args.docs, "--wait")
        finally:
            ragfleet(env, "down")
        figures = {"docs": args.docs, "questions": n, "max_tokens": args.max_tokens,
                   "cores": cores, "modes": {}}
        for mode, up_args in modes(cores).items():
            figures["modes"][mode] = run_mode(env, data_dir, models, up_args, questions,
                                              args.docs, args.max_tokens)
            print(mode, json.dumps(figures["modes"][mode]), flush=True)
    alone = figures["modes"]["turns"]
    figures["shared_over_alone"] = {
        mode: {"batch_wall": round(f["batch_wall_s"] / alone["batch_wall_s"], 2),
               **{m: {"response_s": round(f["models"][m]["response_s_p50"]
                                          / alone["models"][m]["response_s_p50"], 2),
                      "tokens_per_s": round(f["models"][m]["tokens_per_s_p50"]
                                            / alone["models"][m]["tokens_per_s_p50"], 2)}
                  for m in models}}
        for mode, f in figures["modes"].items() if mode != "turns"}
    print(json.dumps(figures["shared_over_alone"], indent=2))
    machine.write("turns", figures)


if __name__ == "__main__":
    main()
