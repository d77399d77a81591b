"""Prompt-prefix reuse, before and after: the same RAG prompts through one loaded model, once
with llama-cpp-python keeping the evaluated tokens between questions (the pools' default: the
fixed system text at the front is evaluated once per process) and once with the cache reset
before every question (what a fresh context per question costs). Writes
benchmarks/results/prefix.json with `ttft_ratio` (reused / reset; < 1 is the saving).

    .venv/bin/python -m benchmarks.bench_prefix [--questions 10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics

from benchmarks import machine
from benchmarks.bench_overhead import PDF, QUESTIONS
from shared.config import Settings
from shared.llm.catalog import load_catalog
from shared.llm.llama_engine import LlamaEngine
from shared.llm.requests import GenerationRequest
from shared.retrieval.chunking import chunk_pages
from shared.retrieval.pdf import extract_pages
from shared.retrieval.prompts import messages_for


def requests(model: str, n: int) -> list[GenerationRequest]:
    """Real questions, each with three different passages of the Northwind PDF."""
    chunks = chunk_pages(PDF.name, extract_pages(PDF.read_bytes(), PDF.name), 1000, 150)
    rows = [json.loads(line) for line in QUESTIONS.read_text().splitlines()[:n]]
    return [GenerationRequest(model=model, max_tokens=8, temperature=0,
                              messages=messages_for(row["question"], [
                                  {"text": c.text} for c in chunks[5 + 3 * i: 8 + 3 * i]]))
            for i, row in enumerate(rows)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--questions", type=int, default=10)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    settings = Settings()
    model = load_catalog(settings.catalog_path).get(args.model)
    engine = LlamaEngine(model, model.ensure_file(settings.models_dir), args.threads)
    batch = requests(args.model, args.questions)
    engine.generate(batch[-1])  # warm up: the first evaluation of a process is slower
    timings = {}
    for mode in ("reset", "reused"):
        ttfts = []
        for request in batch:
            if mode == "reset":
                engine.llm.reset()  # forget the evaluated tokens: the whole prompt again
            ttfts.append(engine.generate(request).ttft_s)
        timings[mode] = ttfts
    prefix_tokens = engine.count_tokens(messages_for("", [])[:1])
    figures = {
        "ttft_ratio": statistics.mean(timings["reused"]) / statistics.mean(timings["reset"]),
        "ttft_reset_mean_s": statistics.mean(timings["reset"]),
        "ttft_reused_mean_s": statistics.mean(timings["reused"]),
        "prompt_tokens_mean": statistics.mean(engine.count_tokens(r.messages) for r in batch),
        "system_prefix_tokens": prefix_tokens,
        "model": args.model,
        "questions": args.questions,
        "threads": args.threads,
        "notes": "only the fixed system text is shared between questions (the passages differ), "
                 "so the saving is about its share of the prompt",
        "command": f".venv/bin/python -m benchmarks.bench_prefix --questions {args.questions}",
    }
    print(json.dumps({k: figures[k] for k in ("ttft_ratio", "ttft_reset_mean_s",
                                              "ttft_reused_mean_s")}))
    machine.write("prefix", figures)


if __name__ == "__main__":
    main()
