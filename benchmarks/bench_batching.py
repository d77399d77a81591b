"""Continuous batching: one model pool with parallel 1, 4 and 8 answering the same question batch,
against bare llama-cpp-python answering the same prompts one by one, in one run. Writes
benchmarks/results/batching.json with a top-level `speedup_vs_bare` (the best model and parallel
setting, named beside it; each model's own in `speedup_vs_bare_by_model`), questions per minute
and tokens per second as ratios, and the pool's peak resident memory per setting. A run of some
models keeps the other models' entries from an earlier run.

    .venv/bin/python -m benchmarks.bench_batching [--questions 20] [--max-tokens 256]
        [--model smollm2-135m --model gemma3-270m] [--parallel 1 --parallel 4 --parallel 8]
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

import psutil

from benchmarks import machine
from benchmarks.bench_overhead import PDF, QUESTIONS, fleet_env, ragfleet
from broker import connection
from shared.config import PROJECT_ROOT, Settings
from shared.llm.catalog import load_catalog
from shared.llm.codec import PromptCodec
from shared.retrieval import prompts
from shared.state import batch_store


def pool_rss(data_dir: Path, model: str) -> int:
    """Resident memory of the model pool: its worker process and any pool children."""
    from broker import processes

    record = processes.load_record(Settings(data_dir=data_dir).run_dir, f"pool-{model}")
    try:
        root = psutil.Process(record.pid)
        return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
    except psutil.Error:
        return 0


def run_pool(data_dir: Path, questions: Path, model: str, parallel: int, max_tokens: int,
             threads: int) -> dict:
    """One batch through a pool started with this parallel setting; wall time and peak RSS."""
    env = fleet_env(data_dir)
    ragfleet(env, "up", "--model", model, "--threads", str(threads), "--parallel", str(parallel))
    try:
        idle_rss = pool_rss(data_dir, model)
        started = time.perf_counter()
        ask = subprocess.Popen(
            [sys.executable, "-m", "producer.cli", "ask", str(questions), "-c", "bench", "-m",
             model, "--max-tokens", str(max_tokens), "--top-k", "3", "--temperature", "0",
             "--wait", "--json"],
            env=env, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        peak = idle_rss
        while ask.poll() is None:
            peak = max(peak, pool_rss(data_dir, model))
            time.sleep(0.5)
        wall = time.perf_counter() - started
        out, err = ask.communicate()
        if ask.returncode:
            raise SystemExit(f"ragfleet ask failed: {err.strip()}")
        summary = json.loads(out)
        _, client = connection.connect(Settings(data_dir=data_dir))
        results = batch_store.results(client, summary["batch"])
        contexts = {r["unit"]: batch_store.contexts(client, summary["batch"], r["unit"])
                    for r in results}
    finally:
        ragfleet(env, "down")
    failed = [r for r in results if r["error"] or r["cancelled"]]
    if failed:
        raise SystemExit(f"parallel {parallel}: {len(failed)} questions failed: {failed[0]}")
    tokens = sum(r["completion_tokens"] for r in results)
    return {
        "parallel": parallel,
        "wall_s": wall,
        "questions_per_min": 60 * len(results) / wall,
        "tokens": tokens,
        "tokens_per_s": tokens / wall,
        "cosine_mean": sum(r["cosine"] for r in results) / len(results),
        "pool_rss_idle_mb": idle_rss / 2**20,
        "pool_rss_peak_mb": peak / 2**20,
        "_results": results,
        "_contexts": contexts,
    }


def bare(model_name: str, results: list[dict], contexts: dict, max_tokens: int,
         threads: int) -> dict:
    """llama-cpp-python alone, one prompt after another: the exact prompt text the pool built."""
    from llama_cpp import Llama

    settings = Settings()
    model = load_catalog(settings.catalog_path).get(model_name)
    llm = Llama(model_path=str(model.ensure_file(settings.models_dir)), n_ctx=model.n_ctx,
                n_threads=threads, n_threads_batch=threads, seed=0, verbose=False)
    codec = PromptCodec(model, llm._model)
    tokens = 0
    started = time.perf_counter()
    for r in results:
        kept = contexts[r["unit"]]["contexts"][:r["contexts_used"]]
        rendered = codec.render(prompts.messages_for(r["question"], kept))
        out = llm.create_completion(codec.tokenize(rendered.text), max_tokens=max_tokens,
                                    temperature=0, stop=rendered.stop)
        tokens += out["usage"]["completion_tokens"]
    wall = time.perf_counter() - started
    return {"wall_s": wall, "questions_per_min": 60 * len(results) / wall, "tokens": tokens,
            "tokens_per_s": tokens / wall}


def bench_model(model: str, questions: Path, data_dir: Path, parallels: list[int],
                max_tokens: int, threads: int) -> dict:
    runs = [run_pool(data_dir, questions, model, p, max_tokens, threads) for p in parallels]
    first = runs[0]
    baseline = bare(model, first["_results"], first["_contexts"], max_tokens, threads)
    for run in runs:
        run.pop("_results"), run.pop("_contexts")
        run["speedup_vs_bare"] = baseline["wall_s"] / run["wall_s"]
        run["tokens_per_s_ratio_vs_bare"] = run["tokens_per_s"] / baseline["tokens_per_s"]
    best = max(runs, key=lambda r: r["speedup_vs_bare"])
    print(json.dumps({"model": model, "bare_s": round(baseline["wall_s"], 1),
                      **{f"p{r['parallel']}_s": round(r["wall_s"], 1) for r in runs}}))
    return {"bare": baseline, "pool": runs, "best_parallel": best["parallel"],
            "speedup_vs_bare": best["speedup_vs_bare"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--questions", type=int, default=20)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--model", action="append", dest="models")
    parser.add_argument("--parallel", action="append", type=int, dest="parallels")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    models = args.models or ["smollm2-135m", "gemma3-270m"]
    parallels = args.parallels or [1, 4, 8]
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        subset = Path(tmp) / "questions.jsonl"
        subset.write_text("\n".join(QUESTIONS.read_text().splitlines()[:args.questions]) + "\n")
        env = fleet_env(data_dir)
        ragfleet(env, "up", "--model", models[0])
        ragfleet(env, "ingest", str(PDF), "-c", "bench", "--wait")
        ragfleet(env, "down")
        by_model = {m: bench_model(m, subset, data_dir, parallels, args.max_tokens, args.threads)
                    for m in models}
    # A run of some models keeps the other models' entries of an earlier run: each model's
    # ratios come from one run (its bare baseline and its pools measured together).
    previous = machine.RESULTS / "batching.json"
    kept = json.loads(previous.read_text()).get("models", {}) if previous.exists() else {}
    for model in by_model:
        by_model[model]["when"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    by_model = {**kept, **by_model}
    best = max(by_model, key=lambda m: by_model[m]["speedup_vs_bare"])
    figures = {
        "speedup_vs_bare": by_model[best]["speedup_vs_bare"],
        "speedup_model": best,
        "speedup_parallel": by_model[best]["best_parallel"],
        "target": 2.0,
        "speedup_vs_bare_by_model": {m: f["speedup_vs_bare"] for m, f in by_model.items()},
        "questions": args.questions,
        "max_tokens": args.max_tokens,
        "threads": args.threads,
        "models": by_model,
        "notes": "wall time of the whole batch (retrieval, queueing, scoring included) against "
                 "bare llama-cpp-python generating the same prompts one by one at temperature 0",
        "command": ".venv/bin/python -m benchmarks.bench_batching "
                   f"--questions {args.questions} --max-tokens {args.max_tokens}",
    }
    machine.write("batching", figures)


if __name__ == "__main__":
    main()
