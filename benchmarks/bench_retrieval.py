"""Latency of one fused query (BM25 + FAISS MMR, weighted RRF, top 4) at 1k, 10k and 100k
chunks, and the memory of a loaded index. Chunks are synthetic (sampled from the Northwind
vocabulary) so the size can grow; vectors are random unit vectors of the embedder's size.

    .venv/bin/python -m benchmarks.bench_retrieval
"""

from __future__ import annotations

import gc
import re
import time

import numpy as np
import psutil

from benchmarks import machine
from shared.config import PROJECT_ROOT
from shared.retrieval.chunking import Chunk
from shared.retrieval.fusion import retrieve
from shared.retrieval.indexes import SearchIndex, build_faiss, tokenize
from shared.retrieval.pdf import extract_pages

SIZES = (1_000, 10_000, 100_000)
QUERIES = 50
DIM = 384


def vocabulary() -> list[str]:
    pdf = PROJECT_ROOT / "data" / "northwind" / "Northwind_Standard_Benefits_Details.pdf"
    text = " ".join(p.text for p in extract_pages(pdf.read_bytes(), pdf.name))
    return re.findall(r"[A-Za-z]+", text)


def synthetic(n: int, words: list[str], rng) -> tuple[list[Chunk], np.ndarray]:
    picks = rng.integers(0, len(words), size=(n, 150))  # about 1000 characters a chunk
    chunks = [Chunk("synthetic.pdf", i // 3 + 1, " ".join(words[j] for j in row))
              for i, row in enumerate(picks)]
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return chunks, vectors


def measure(n: int, words: list[str], rng) -> dict:
    import faiss

    faiss.omp_set_num_threads(1)  # one query at a time runs fastest on one thread
    chunks, vectors = synthetic(n, words, rng)
    gc.collect()
    rss_before = psutil.Process().memory_info().rss
    index = SearchIndex(chunks, build_faiss(vectors), [tokenize(c.text) for c in chunks])
    rss_after = psutil.Process().memory_info().rss
    queries = [" ".join(rng.choice(words, size=8)) for _ in range(QUERIES)]
    qvecs = rng.standard_normal((QUERIES, DIM)).astype(np.float32)
    timings = {"fused": [], "bm25": [], "faiss_mmr": []}
    for query, qvec in zip(queries, qvecs):
        qvec /= np.linalg.norm(qvec)
        started = time.perf_counter()
        retrieve(index, query, qvec, top_k=4)
        timings["fused"].append(time.perf_counter() - started)
        started = time.perf_counter()
        index.bm25_search(query, 20)
        timings["bm25"].append(time.perf_counter() - started)
        started = time.perf_counter()
        index.mmr_search(qvec, 20, 40)
        timings["faiss_mmr"].append(time.perf_counter() - started)
    rank_bm25_ms = _rank_bm25_baseline(index.tokens, queries[:10])
    return {
        "chunks": n,
        "rank_bm25_p50_ms": rank_bm25_ms and machine.percentile(rank_bm25_ms, 50),
        "rank_bm25_p95_ms": rank_bm25_ms and machine.percentile(rank_bm25_ms, 95),
        **{f"{name}_p50_ms": machine.percentile(v, 50) * 1000 for name, v in timings.items()},
        **{f"{name}_p95_ms": machine.percentile(v, 95) * 1000 for name, v in timings.items()},
        "index_memory_mb": (rss_after - rss_before) / 2**20,
    }


def _rank_bm25_baseline(tokens: list[list[str]], queries: list[str]) -> list[float] | None:
    """The library the design started with, scoring every document in Python per query."""
    try:
        from rank_bm25 import BM25Okapi
    except ImportError:  # installed with the test extra
        return None
    reference = BM25Okapi(tokens)
    timings = []
    for query in queries:
        started = time.perf_counter()
        reference.get_scores(tokenize(query))
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def main() -> None:
    rng = np.random.default_rng(7)
    words = vocabulary()
    rows = [measure(n, words, rng) for n in SIZES]
    for row in rows:
        print(f"{row['chunks']:>7} chunks: fused p50 {row['fused_p50_ms']:.1f} ms, "
              f"p95 {row['fused_p95_ms']:.1f} ms (bm25 p95 {row['bm25_p95_ms']:.1f} ms, "
              f"rank_bm25 p95 {row['rank_bm25_p95_ms'] or 0:.1f} ms), "
              f"index {row['index_memory_mb']:.0f} MB")
    machine.write("retrieval", {
        "sizes": rows,
        "target_p95_ms_at_100k": 50,
        "meets_target": rows[-1]["fused_p95_ms"] < 50,
        "queries_per_size": QUERIES,
        "command": ".venv/bin/python -m benchmarks.bench_retrieval",
    })


if __name__ == "__main__":
    main()
