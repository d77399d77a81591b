"""The study's question at the scale available here: a 1.5B model at Q4_K_M and at a 2-bit type
against the bundled 135M and 270M models, on one document set's reference questions.

One batch asks every question of every model (so each pair of models is compared question by
question, paired), but the model pools take turns: one pool at a time runs, with every core,
so each model's latency is its own on this machine, not shared with another model's. The
script starts each pool when the one before has answered everything, and stops it after.

Reports per model: mean cosine with its interval, paired differences, latency p50/p95, time to
first token, tokens/s, load time, peak memory (resident, and anonymous vs file-backed, per
answer) against the fit check's estimate, and what `results --recommend` says under an 8 GB, a
2 GB and a 1 GB memory limit. Writes benchmarks/results/study_scale.json.

    python -m benchmarks.bench_study [--questions 50] [--max-tokens 256] [--docs northwind]
        [--models smollm2-135m,gemma3-270m,qwen2.5-coder-1.5b,qwen2.5-coder-1.5b-q2_k]

The 1.5B models are installed on request: `ragfleet models pull qwen2.5-coder-1.5b` and
`ragfleet models quantize qwen2.5-coder-1.5b --to Q2_K`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import machine
from benchmarks.bench_overhead import PROJECT_ROOT, fleet_env, ragfleet
from broker import connection
from shared.config import Settings
from shared.llm.catalog import load_fleet_catalog
from shared.llm.memory import estimate
from shared.state import batch_store

DATA = PROJECT_ROOT.parent / "shared" / "data"
DOCS = {"northwind": DATA / "northwind", "galaxy-s10": DATA / "galaxy-s10"}
MODELS = "smollm2-135m,gemma3-270m,qwen2.5-coder-1.5b,qwen2.5-coder-1.5b-q2_k"
MEMORY_LIMITS = ("8GB", "2GB", "1GB")


def questions_file(folder: Path, n: int, out: Path) -> int:
    rows = [json.loads(line) for line in (folder / "ground_truth.jsonl").read_text().splitlines()
            if line.strip()]
    lines = [json.dumps({"id": row.get("id") or f"gt-{i:02d}", "question": row["question"],
                         "reference": row.get("reference") or row.get("truth") or row["answer"]})
             for i, row in enumerate(rows[:n], start=1)]
    out.write_text("\n".join(lines) + "\n")
    return len(lines)


def answered(client, batch_id: str, model: str) -> int:
    return sum(1 for r in batch_store.results(client, batch_id) if r["model"] == model)


def run_pool_alone(env: dict, client, batch_id: str, model: str, n: int, threads: int,
                   log: Path) -> float:
    """Start the model's pool, wait until it has answered the batch's n questions, stop it."""
    started = time.monotonic()
    with log.open("ab") as out:
        pool = subprocess.Popen([sys.executable, "-m", "producer.cli", "worker", "--model", model,
                                 "--threads", str(threads)], env=env, cwd=PROJECT_ROOT,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        while answered(client, batch_id, model) < n:
            if pool.poll() is not None:
                raise SystemExit(f"the {model} pool exited ({pool.returncode}); see {log}")
            time.sleep(2)
    finally:
        pool.terminate()
        pool.wait(timeout=120)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=50)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--docs", choices=sorted(DOCS), default="northwind")
    parser.add_argument("--models", default=MODELS)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="the fleet's data directory, kept afterwards (default: "
                             ".ragfleet/bench-study-DOCS, emptied first)")
    args = parser.parse_args()
    models = args.models.split(",")
    settings = Settings()
    catalog = load_fleet_catalog(settings)
    paths = {m: catalog.get(m).ensure_file(settings.models_dir) for m in models}
    with tempfile.TemporaryDirectory() as tmp:
        # kept: the batch stays readable (RAGFLEET_DATA_DIR=... ragfleet up; results) if a later
        # step fails
        data_dir = args.data_dir or PROJECT_ROOT / ".ragfleet" / f"bench-study-{args.docs}"
        shutil.rmtree(data_dir, ignore_errors=True)
        env = fleet_env(data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        if settings.user_catalog_path.is_file():  # `models quantize` entries live there
            shutil.copy(settings.user_catalog_path, data_dir / "catalog.toml")
        questions = Path(tmp) / "questions.jsonl"
        n = questions_file(DOCS[args.docs], args.questions, questions)
        pdfs = sorted(DOCS[args.docs].glob("*.pdf"))
        figures: dict = {"docs": args.docs, "questions": n, "max_tokens": args.max_tokens,
                         "threads": args.threads, "top_k": 4, "models": models}
        try:
            ragfleet(env, "up", "--model", models[0], "--threads", str(args.threads))
            ragfleet(env, "ingest", *map(str, pdfs), "-c", args.docs, "--wait")
            batch_id = json.loads(ragfleet(
                env, "ask", str(questions), "-c", args.docs, *[a for m in models for a in
                                                              ("-m", m)],
                "--max-tokens", str(args.max_tokens), "--top-k", "4", "--no-wait",
                "--queue-anyway", "--json"))["batch"]  # the other pools take their turns below
            _, client = connection.connect(Settings(data_dir=data_dir))
            wall = {}
            started = time.monotonic()
            while answered(client, batch_id, models[0]) < n:  # its pool came up with `up`
                time.sleep(2)
            wall[models[0]] = time.monotonic() - started
            for model in models[1:]:
                wall[model] = run_pool_alone(env, client, batch_id, model, n, args.threads,
                                             data_dir / f"pool-{model}.log")
            while batch_store.get(client, batch_id)["status"] not in batch_store.FINISHED:
                time.sleep(2)  # the last scores
            figures["batch"] = batch_id
            figures["wall_s_per_model"] = {m: round(s, 1) for s, m in
                                           ((wall[m], m) for m in models)}
            figures["results"] = json.loads(ragfleet(env, "results", batch_id,
                                                     "--format", "json"))
            figures["memory"] = memory_rows(client, batch_id, models, paths, catalog)
            figures["recommend"] = {
                limit: recommendation(env, batch_id, limit) for limit in MEMORY_LIMITS}
        finally:
            ragfleet(env, "down")
    print(json.dumps({k: figures[k] for k in ("memory", "recommend", "wall_s_per_model")},
                     indent=2))
    machine.write("study_scale" if args.docs == "northwind" else f"study_scale_{args.docs}",
                  figures)


def memory_rows(client, batch_id: str, models: list[str], paths: dict, catalog) -> dict:
    """Per model: the estimate the fit check uses against the pool's measured memory."""
    results = batch_store.results(client, batch_id)
    rows = {}
    for model in models:
        mine = [r for r in results if r["model"] == model and r.get("pool_peak_rss_bytes")]
        guess = estimate(paths[model], catalog.get(model).n_ctx, 1)

        def most(key: str, rows=mine) -> int | None:
            return max((r[key] for r in rows if r.get(key)), default=None)

        peak = most("pool_peak_rss_bytes")
        rows[model] = {"estimate_bytes": guess.total, "peak_rss_bytes": peak,
                       "rss_anon_bytes": most("pool_rss_anon_bytes"),
                       "rss_file_bytes": most("pool_rss_file_bytes"),
                       "estimate_over_peak_rss": round(guess.total / peak, 3) if peak else None}
    return rows


def recommendation(env: dict, batch_id: str, limit: str) -> str:
    done = subprocess.run([sys.executable, "-m", "producer.cli", "results", batch_id,
                           "--recommend", "--max-memory", limit], env=env, cwd=PROJECT_ROOT,
                          capture_output=True, text=True)
    text = (done.stdout + done.stderr).strip().splitlines()
    start = next((i for i, line in enumerate(text) if "recommend" in line.lower()), 0)
    return "\n".join(text[start:])


if __name__ == "__main__":
    main()
