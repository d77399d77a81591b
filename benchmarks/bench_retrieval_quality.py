"""Retrieval quality on the 50 Northwind questions: how often the page a reference cites
([file.pdf#page=N]) is among the top-k fused hits, and the mean reciprocal rank, with the
default chunking and fusion, the way a batch computes them (shared.pipeline.answering.cited_rank).
Also each retriever alone (BM25, FAISS MMR) for comparison.

    .venv/bin/python -m benchmarks.bench_retrieval_quality [--top-k 4]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import redis

from benchmarks import machine
from broker import embedded_redis
from shared.config import PROJECT_ROOT, Settings
from shared.pipeline.answering import cited_rank
from shared.pipeline.ingestion import SourceDocument, ingest, load_index
from shared.pipeline.questions import split_citations
from shared.report.stats import retrieval_metrics
from shared.retrieval.embeddings import get_embedder
from shared.retrieval.fusion import retrieve

NORTHWIND = PROJECT_ROOT / "data" / "northwind"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--top-k", type=int, default=4)
    parser.add_argument("--bm25-weight", type=float, default=0.3)
    args = parser.parse_args()
    rows = [json.loads(line) for line in (NORTHWIND / "ground_truth.jsonl").read_text()
            .splitlines() if line.strip()]
    embedder = get_embedder()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp))
        record = embedded_redis.start(settings)
        try:
            client = redis.Redis.from_url(record.info["url"])
            sources = [SourceDocument(p.name, p.read_bytes())
                       for p in sorted(NORTHWIND.glob("*.pdf"))]
            ingest(client, "nw", sources, None, None, embedder, (1000, 150))
            _, index = load_index(client, "nw")
        finally:
            embedded_redis.stop(settings)
    results: dict[str, list[dict]] = {"fused": [], "bm25": [], "faiss_mmr": []}
    for i, row in enumerate(rows):
        _, cited = split_citations(row.get("reference") or row["truth"])
        question = {"id": f"q{i}", "sources": list(cited)}
        vector = embedder.embed([row["question"]])[0]
        ranked = {
            "fused": [h.chunk for h in retrieve(index, row["question"], vector, top_k=args.top_k,
                                                bm25_weight=args.bm25_weight)],
            "bm25": [c for c, _ in index.bm25_search(row["question"], args.top_k)],
            "faiss_mmr": index.mmr_search(vector, k=args.top_k),
        }
        for name, chunks in ranked.items():
            contexts = {"contexts": [{"document": index.chunks[c].document,
                                      "page": index.chunks[c].page} for c in chunks]}
            results[name].append({"question_id": question["id"],
                                  "retrieval": cited_rank(question, contexts)})
    figures = {name: retrieval_metrics(rs) for name, rs in results.items()}
    figures.update(top_k=args.top_k, bm25_weight=args.bm25_weight, chunks=len(index.chunks),
                   hit_rate=figures["fused"]["hit_rate"], mrr=figures["fused"]["mrr"],
                   command=f".venv/bin/python -m benchmarks.bench_retrieval_quality "
                           f"--top-k {args.top_k}")
    print(json.dumps({k: figures[k] for k in ("hit_rate", "mrr")}))
    machine.write("retrieval_quality", figures)


if __name__ == "__main__":
    main()
