"""Embedders compared on the same texts: torch fp32 (sentence-transformers, the reference),
ONNX Runtime fp32 and ONNX Runtime dynamic int8, each on 1 thread and on every core.

Speed: chunks per second embedding 256 Northwind chunks (1000/150, as ingestion makes them),
the way ingestion calls the embedder (longest first), each backend at its default batch size
(torch 64, ONNX Runtime 2) and at the other's; each configuration runs
`--repeats` times, the rounds interleaved so a disturbance hits every backend alike; the best
and the median are reported. Memory: each backend in a fresh process, resident memory after
loading and the peak after embedding 64 chunks. Exactness, against torch fp32: the largest
difference of a vector's component, the lowest cosine between a text's two vectors, and, what
scoring depends on, the largest difference of answer-vs-reference cosines over pairs made from
the 50 Northwind references (with its question, the reference without its citation, its first
sentence, and the next reference).

    .venv/bin/python -m benchmarks.bench_embedders [--chunks 256] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

import numpy as np

from benchmarks import machine
from shared.config import PROJECT_ROOT
from shared.retrieval import embeddings
from shared.retrieval.chunking import chunk_pages
from shared.retrieval.pdf import extract_pages

NORTHWIND = PROJECT_ROOT / "data" / "northwind"
BACKENDS = ("torch-fp32", "onnx-fp32", "onnx-int8")
BATCH_SIZES = (2, 64)  # ONNX Runtime's default, torch's default


def chunks(count: int) -> list[str]:
    texts = []
    for pdf in sorted(NORTHWIND.glob("*.pdf")):
        pages = extract_pages(pdf.read_bytes(), pdf.name)
        texts += [c.text for c in chunk_pages(pdf.name, pages, 1000, 150)]
    return texts[:count]


def scoring_pairs() -> list[tuple[str, str]]:
    """(answer-like, reference) pairs: the kinds of texts answers are scored on."""
    rows = [json.loads(line) for line in (NORTHWIND / "ground_truth.jsonl").read_text()
            .splitlines() if line.strip()]
    pairs = []
    for i, row in enumerate(rows):
        truth = row["truth"]
        plain = re.sub(r"\s*\[[^\]]*\]", "", truth).strip()
        first = re.split(r"(?<=[.!?])\s", plain)[0]
        pairs += [(row["question"], truth), (plain, truth), (first, truth),
                  (rows[(i + 1) % len(rows)]["truth"], truth)]
    return pairs


def exactness(vectors: np.ndarray, reference: np.ndarray, pair_vectors: np.ndarray,
              pair_reference: np.ndarray) -> dict:
    n = len(pair_vectors) // 2
    cos = (pair_vectors[:n] * pair_vectors[n:]).sum(1)
    cos_ref = (pair_reference[:n] * pair_reference[n:]).sum(1)
    return {"max_abs_diff_per_vector": float(np.abs(vectors - reference).max()),
            "min_cosine_to_torch": float((vectors * reference).sum(1).min()),
            "mean_cosine_to_torch": float((vectors * reference).sum(1).mean()),
            "pairs": n,
            "max_pair_cosine_diff": float(np.abs(cos - cos_ref).max()),
            "mean_pair_cosine_diff": float(np.abs(cos - cos_ref).mean())}


def memory(kind: str, texts: list[str]) -> dict:
    """Resident memory of a fresh process holding the embedder, after loading and at its peak
    embedding 64 chunks on every core (its own process: what a cpu worker's pool process holds;
    the peak is the kernel's high-water mark, VmHWM, which a new program starts afresh)."""
    code = (
        "import json, os, sys, psutil\n"
        "from shared.retrieval import embeddings\n"
        "texts = json.loads(sys.stdin.read())\n"
        f"e = embeddings.load({kind!r})\n"
        "loaded = psutil.Process().memory_info().rss\n"
        "e.embed(texts, threads=lambda: os.cpu_count())\n"
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
        "print(json.dumps({'embedder': embeddings.embedder_id(e), 'rss_loaded_mb': loaded / 2**20,"
        " 'peak_rss_mb': int(hwm) / 1024, 'torch_imported': 'torch' in sys.modules}))\n")
    done = subprocess.run([sys.executable, "-c", code], input=json.dumps(texts[:64]),
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    thread_counts = sorted({1, cores})
    texts = chunks(args.chunks)
    pairs = scoring_pairs()
    pair_texts = [a for a, _ in pairs] + [b for _, b in pairs]

    loaded, load_s = {}, {}
    for kind in args.backends:
        started = time.perf_counter()
        loaded[kind] = embeddings.load(kind)
        load_s[kind] = time.perf_counter() - started
        loaded[kind].embed(texts[:8])  # warm up
        print(f"{kind}: {embeddings.embedder_id(loaded[kind])} loaded in {load_s[kind]:.1f} s",
              flush=True)
    reference = loaded["torch-fp32"] if "torch-fp32" in loaded else embeddings.load("torch-fp32")
    ref_vectors = reference.embed(texts)
    ref_pairs = reference.embed(pair_texts)

    # each backend at its default batch size and at the other's (torch 64, ONNX Runtime 2)
    configs = [(kind, size) for kind in loaded
               for size in sorted({loaded[kind].batch_size, *BATCH_SIZES})]
    seconds: dict[tuple[str, int, int], list[float]] = {}
    for _ in range(args.repeats):  # rounds interleaved: a busy moment slows every backend alike
        for kind, size in configs:
            embedder = loaded[kind]
            default, embedder.batch_size = embedder.batch_size, size
            try:
                for n in thread_counts:
                    started = time.perf_counter()
                    embedder.embed(texts, threads=lambda n=n: n)
                    seconds.setdefault((kind, size, n), []).append(time.perf_counter() - started)
            finally:
                embedder.batch_size = default

    figures: dict = {"command": f".venv/bin/python -m benchmarks.bench_embedders --chunks "
                                f"{args.chunks} --repeats {args.repeats}",
                     "texts": f"{len(texts)} Northwind chunks (1000/150)",
                     "scoring_pairs": "50 Northwind references, each with its question, itself "
                                      "without citation, its first sentence, the next reference",
                     "backends": {}}
    for kind, embedder in loaded.items():
        speed = {}
        for _, size in [c for c in configs if c[0] == kind]:
            for n in thread_counts:
                times = seconds[(kind, size, n)]
                speed[f"batch {size}, {n} threads"] = {
                    "batch_size": size, "threads": n,
                    "chunks_per_s_best": len(texts) / min(times),
                    "chunks_per_s_median": len(texts) / statistics.median(times),
                    "seconds": times}
        entry = {"embedder": embeddings.embedder_id(embedder), "load_s": load_s[kind],
                 "default_batch_size": embedder.batch_size, "speed": speed,
                 **exactness(embedder.embed(texts), ref_vectors, embedder.embed(pair_texts),
                             ref_pairs)}
        if not args.skip_memory:
            entry["memory"] = memory(kind, texts)
        figures["backends"][kind] = entry
        print(kind, json.dumps({k: v for k, v in entry.items() if k != "speed"}),
              {k: round(v["chunks_per_s_best"], 1) for k, v in speed.items()}, flush=True)

    def best(kind: str, threads: int | None = None, default_only: bool = False) -> float:
        entry = figures["backends"][kind]
        return max(v["chunks_per_s_best"] for v in entry["speed"].values()
                   if (threads is None or v["threads"] == threads)
                   and (not default_only or v["batch_size"] == entry["default_batch_size"]))

    exact = [k for k in loaded if figures["backends"][k]["max_pair_cosine_diff"] <= 1e-3]
    summary = {}
    for n in thread_counts:
        fastest_exact = max(exact, key=lambda k: best(k, n))
        summary[f"{n} threads"] = {
            "default_batch_chunks_per_s": {k: best(k, n, default_only=True) for k in loaded},
            "fastest_exact": fastest_exact, "fastest_exact_chunks_per_s": best(fastest_exact, n),
            **({"onnx_fp32_default_vs_fastest_exact":
                best("onnx-fp32", n, default_only=True) / best(fastest_exact, n)}
               if "onnx-fp32" in loaded else {})}
    figures["summary"] = summary
    print(json.dumps(summary, indent=1))
    machine.write("embedders", figures)


if __name__ == "__main__":
    main()
