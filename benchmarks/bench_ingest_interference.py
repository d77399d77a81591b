"""How much an ingestion slows the answers of a model pool on the same host (issue 16: at most
10%). One fleet (embedded Redis, cpu pool, one SmolLM2 pool on every core): the same batch of
Northwind questions alone, then while a 639-page PDF is ingested, then alone again; the
slowdown is the mean model time per answer (response_s) during the ingestion over the mean of
the two runs alone. The ingestion is checked to be still running when the batch ends, so every
answer of that batch competed with it. Also the ingestion's time with and without the batch.

    .venv/bin/python -m benchmarks.bench_ingest_interference [--questions 12] [--max-tokens 128]

Writes benchmarks/results/ingest_interference.json (top-level `answer_slowdown`: 1.05 means
answers took 5% longer while the ingestion ran).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import machine
from benchmarks.bench_baseline import GROUND_TRUTH, PDFS
from benchmarks.bench_ingest import long_pdf
from benchmarks.bench_overhead import fleet_env, ragfleet
from broker import connection
from shared.config import PROJECT_ROOT, Settings
from shared.state import batch_store

MODEL = "smollm2-135m"


def ask(env: dict, client, questions: Path, max_tokens: int) -> dict:
    started = time.perf_counter()
    summary = json.loads(ragfleet(env, "ask", str(questions), "-c", "nw", "-m", MODEL,
                                  "--max-tokens", str(max_tokens), "--temperature", "0",
                                  "--wait", "--json"))
    wall = time.perf_counter() - started
    results = [r for r in batch_store.results(client, summary["batch"]) if not r["error"]]
    return {"wall_s": wall, "answers": len(results),
            "response_s_mean": statistics.mean(r["response_s"] for r in results),
            "tokens_per_s_mean": statistics.mean(r["tokens_per_s"] for r in results
                                                 if r.get("tokens_per_s"))}


def ingest_in_background(env: dict, pdf: Path, collection: str) -> tuple[subprocess.Popen, float]:
    process = subprocess.Popen([sys.executable, "-m", "producer.cli", "ingest", str(pdf), "-c",
                                collection, "--wait", "--json"], env=env, cwd=PROJECT_ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return process, time.perf_counter()


def finish(process: subprocess.Popen, started: float) -> float:
    _, err = process.communicate(timeout=1800)
    if process.returncode:
        raise SystemExit(f"ingestion failed: {err.strip()}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--questions", type=int, default=12)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--copies", type=int, default=3, help="Northwind copies in the big PDF")
    args = parser.parse_args()
    rows = [json.loads(line) for line in GROUND_TRUTH.read_text().splitlines() if line.strip()]
    threads = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        questions = tmp / "q.jsonl"
        questions.write_text("".join(json.dumps({"question": r["question"],
                                                 "reference": r["truth"]}) + "\n"
                                     for r in rows[:args.questions]))
        big = tmp / "big.pdf"
        big.write_bytes(long_pdf(args.copies))
        env = fleet_env(tmp / "data")
        ragfleet(env, "up", "--model", MODEL, "--threads", str(threads))
        try:
            ragfleet(env, "ingest", *map(str, PDFS), "-c", "nw", "--wait")
            _, client = connection.connect(Settings(data_dir=tmp / "data"))
            ask(env, client, questions, args.max_tokens)  # warm: the model's first prompts
            alone_before = ask(env, client, questions, args.max_tokens)
            process, started = ingest_in_background(env, big, "big")
            time.sleep(2)  # the job reaches the cpu pool and starts reading
            during = ask(env, client, questions, args.max_tokens)
            still_running = process.poll() is None
            ingest_with_batch_s = finish(process, started)
            alone_after = ask(env, client, questions, args.max_tokens)
            process, started = ingest_in_background(env, big, "big-alone")
            ingest_alone_s = finish(process, started)
        finally:
            ragfleet(env, "down")
    alone = statistics.mean([alone_before["response_s_mean"], alone_after["response_s_mean"]])
    figures = {
        "answer_slowdown": during["response_s_mean"] / alone,
        "ingestion_overlapped_the_whole_batch": still_running,
        "batch_alone_before": alone_before, "batch_during_ingestion": during,
        "batch_alone_after": alone_after,
        "ingestion_with_batch_s": ingest_with_batch_s, "ingestion_alone_s": ingest_alone_s,
        "ingestion_slowdown": ingest_with_batch_s / ingest_alone_s,
        "model": MODEL, "pool_threads": threads, "questions": args.questions,
        "max_tokens": args.max_tokens, "big_pdf_pages": 213 * args.copies,
        "command": f".venv/bin/python -m benchmarks.bench_ingest_interference --questions "
                   f"{args.questions} --max-tokens {args.max_tokens} --copies {args.copies}",
    }
    print(json.dumps({k: figures[k] for k in ("answer_slowdown", "ingestion_slowdown",
                                              "ingestion_overlapped_the_whole_batch")}))
    machine.write("ingest_interference", figures)


if __name__ == "__main__":
    main()
