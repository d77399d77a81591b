"""Decoding alone: how many tokens per second the batching engine produces with 1, 4 and 8
sequences decoding together (short prompts, so prompt evaluation is negligible), and the split
against the unified KV cache at 8. Each setting runs in a fresh process (two llama.cpp engines in
one process slow each other down). Writes benchmarks/results/decode.json.

    .venv/bin/python -m benchmarks.bench_decode [--tokens 160]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from benchmarks import machine
from shared.config import PROJECT_ROOT

SETTINGS = [(1, False), (4, False), (8, False), (8, True)]


def one_setting(model_name: str, parallel: int, unified: bool, tokens: int, threads: int) -> dict:
    """Runs in its own process: `parallel` requests at once, aggregate tokens per second."""
    from shared.config import Settings
    from shared.llm.batched_engine import BatchedEngine
    from shared.llm.catalog import load_catalog
    from shared.llm.requests import ChatMessage, GenerationRequest

    settings = Settings()
    model = load_catalog(settings.catalog_path).get(model_name)
    engine = BatchedEngine(model, model.ensure_file(settings.models_dir), threads, parallel,
                           unified_kv=unified)
    requests = [GenerationRequest(model=model_name, max_tokens=tokens, temperature=0, messages=[
        ChatMessage(role="user", content=f"Write a long story about a cat called number {i}.")])
        for i in range(parallel)]
    try:
        engine.generate(requests[0].model_copy(update={"max_tokens": 8}))  # warm up
        started = time.perf_counter()
        results = [f.result() for f in [engine.submit(r) for r in requests]]
        wall = time.perf_counter() - started
    finally:
        engine.close()
    produced = sum(r.completion_tokens for r in results)
    return {"model": model_name, "parallel": parallel, "unified_kv": unified, "tokens": produced,
            "wall_s": wall, "tokens_per_s": produced / wall}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=160)
    parser.add_argument("--model", action="append", dest="models")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--one", nargs=2, metavar=("PARALLEL", "UNIFIED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    models = args.models or ["smollm2-135m", "gemma3-270m"]
    if args.one:  # the child process of one setting
        figures = one_setting(models[0], int(args.one[0]), args.one[1] == "1", args.tokens,
                              args.threads)
        print(json.dumps(figures))
        return
    runs = []
    for model in models:
        for parallel, unified in SETTINGS:
            out = subprocess.run(
                [sys.executable, "-m", "benchmarks.bench_decode", "--model", model, "--tokens",
                 str(args.tokens), "--threads", str(args.threads), "--one", str(parallel),
                 "1" if unified else "0"],
                cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(json.dumps(runs[-1]))
    by_model = {}
    for model in models:
        mine = {(r["parallel"], r["unified_kv"]): r["tokens_per_s"] for r in runs
                if r["model"] == model}
        by_model[model] = {
            "tokens_per_s": {f"parallel_{p}{'_unified' if u else ''}": v
                             for (p, u), v in mine.items()},
            "batching_gain_8_vs_1": mine[(8, False)] / mine[(1, False)],
            "split_vs_unified_kv_at_8": mine[(8, False)] / mine[(8, True)],
        }
    machine.write("decode", {
        "models": by_model, "runs": runs, "tokens_per_sequence": args.tokens,
        "threads": args.threads,
        "command": f".venv/bin/python -m benchmarks.bench_decode --tokens {args.tokens}",
    })


if __name__ == "__main__":
    main()
