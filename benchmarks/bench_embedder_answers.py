"""Does the int8 embedder change the answers? The same questions, models and sampling against two
collections of the same PDFs, one built by the exact onnx-fp32 embedder and one by onnx-int8;
each question's answer cosine paired across the two (issue 16: int8 is 2.5x the study's
ingestion, fp32 1.3x; int8 is the default only if the answers do not get worse).

One fleet: the cpu pool is started once per embedder (RAGFLEET_EMBEDDER is the ingesting
worker's setting), each collection records its embedder, and queries use the matching one, so
both collections are asked on the same pools. Greedy decoding (temperature 0): a difference
between the two runs comes from what was retrieved, not from sampling. Writes
benchmarks/results/embedder_answers.json.

    .venv/bin/python -m benchmarks.bench_embedder_answers [--questions 50] [--max-tokens 128]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks import machine
from benchmarks.bench_baseline import GROUND_TRUTH, PDFS
from benchmarks.bench_overhead import fleet_env, ragfleet
from broker import connection
from shared.config import Settings
from shared.report.stats import bootstrap_ci
from shared.state import batch_store

EMBEDDERS = ("onnx-fp32", "onnx-int8")


def ingest_with(env: dict, models: list[str], threads: int, embedder: str) -> None:
    """Start the fleet with the cpu pool on `embedder` and build the collection named after it."""
    env = {**env, "RAGFLEET_EMBEDDER": embedder}
    ragfleet(env, "up", *[a for m in models for a in ("--model", m)], "--threads", str(threads))
    ragfleet(env, "ingest", *map(str, PDFS), "-c", embedder, "--wait")
    built = json.loads(ragfleet(env, "collections", "show", embedder, "--json"))["embedder"]
    if not built.startswith(f"{embedder}:"):  # e.g. no ONNX export: torch stood in
        raise SystemExit(f"collection {embedder} was built by {built}, not {embedder}")


def submit(env: dict, questions: Path, collection: str, model: str, max_tokens: int) -> str:
    return json.loads(ragfleet(env, "ask", str(questions), "-c", collection, "-m", model,
                               "--max-tokens", str(max_tokens), "--top-k", "4",
                               "--temperature", "0", "--no-wait", "--json"))["batch"]


def rows_when_finished(client, batch_id: str) -> dict:
    while batch_store.get(client, batch_id)["status"] not in batch_store.FINISHED:
        time.sleep(2)
    return {r["question_id"]: r for r in batch_store.results(client, batch_id)}


def paired(fp32: dict, int8: dict) -> dict:
    """int8 minus fp32, per question answered by both."""
    both = sorted(q for q in fp32 if q in int8 and fp32[q]["cosine"] is not None
                  and int8[q]["cosine"] is not None)
    diffs = [int8[q]["cosine"] - fp32[q]["cosine"] for q in both]
    low, high = bootstrap_ci(diffs) or (None, None)
    return {
        "questions": len(both),
        "fp32_mean_cosine": statistics.mean(fp32[q]["cosine"] for q in both),
        "int8_mean_cosine": statistics.mean(int8[q]["cosine"] for q in both),
        "mean_difference": statistics.mean(diffs),
        "difference_ci95": [low, high],
        "int8_better": sum(d > 0.005 for d in diffs),
        "int8_worse": sum(d < -0.005 for d in diffs),
        "same_answer": sum(fp32[q]["answer"] == int8[q]["answer"] for q in both),
    }


def hit_rate(rows: dict) -> float | None:
    ranks = [r["retrieval"]["rank"] for r in rows.values() if r.get("retrieval")]
    return sum(rank is not None for rank in ranks) / len(ranks) if ranks else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=50)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--models", default="smollm2-135m,gemma3-270m")
    parser.add_argument("--threads", type=int, default=1, help="per pool (both run at once)")
    args = parser.parse_args()
    models = args.models.split(",")
    rows = [json.loads(line) for line in GROUND_TRUTH.read_text().splitlines() if line.strip()]
    lines = [json.dumps({"id": f"gt-{i:02d}", "question": row["question"],
                         "reference": row.get("reference") or row["truth"]})
             for i, row in enumerate(rows[:args.questions], start=1)]
    with tempfile.TemporaryDirectory() as tmp:
        questions = Path(tmp) / "questions.jsonl"
        questions.write_text("\n".join(lines) + "\n")
        env = fleet_env(Path(tmp) / "data")
        runs: dict[str, dict[str, dict]] = {m: {} for m in models}
        try:
            for embedder in EMBEDDERS:
                ragfleet(env, "down")  # the cpu pool restarts on the next embedder
                ingest_with(env, models, args.threads, embedder)
            _, client = connection.connect(Settings(data_dir=Path(tmp) / "data"))
            # every batch at once: the pools of both models work side by side
            batches = {(m, e): submit(env, questions, e, m, args.max_tokens)
                       for m in models for e in EMBEDDERS}
            for (model, embedder), batch_id in batches.items():
                runs[model][embedder] = {"rows": rows_when_finished(client, batch_id)}
        finally:
            ragfleet(env, "down")
    figures = {
        "questions_file": GROUND_TRUTH.name,
        "params": {"questions": len(lines), "max_tokens": args.max_tokens, "top_k": 4,
                   "temperature": 0, "threads_per_pool": args.threads, "cores": os.cpu_count()},
        "hit_rate_at_4": {e: hit_rate(runs[models[0]][e]["rows"]) for e in EMBEDDERS},
        "by_model": {m: paired(runs[m]["onnx-fp32"]["rows"], runs[m]["onnx-int8"]["rows"])
                     for m in models},
    }
    print(json.dumps({k: figures[k] for k in ("hit_rate_at_4", "by_model")}, indent=2))
    machine.write("embedder_answers", figures)


if __name__ == "__main__":
    main()
