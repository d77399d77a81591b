"""Retrieval quality on the 50 Northwind questions: how often the page a reference cites
([file.pdf#page=N]) is among the top-k fused hits, and the mean reciprocal rank, with the
default chunking and fusion, the way a batch computes them (shared.pipeline.answering.cited_rank).
Also each retriever alone (BM25, FAISS MMR) for comparison, and all of it once per embedder
(torch fp32, ONNX fp32, ONNX int8): the top-level figures are the default embedder's.

    .venv/bin/python -m benchmarks.bench_retrieval_quality [--top-k 4] [--sweep]

--sweep also tries what could raise the hit rate (chunk sizes, BM25 weights, plain similarity
instead of MMR, at most one chunk per page, the document's name in every chunk) and, for each
retriever alone, the hit rate at 10, 20 and 50 and with the cited page's neighbours counted:
the ceiling any reranking of their candidates could reach.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import redis

from benchmarks import machine
from broker import embedded_redis
from shared.config import PROJECT_ROOT, Settings, get_settings
from shared.pipeline.answering import cited_rank
from shared.pipeline.ingestion import SourceDocument, ingest, load_index
from shared.pipeline.questions import split_citations
from shared.report.stats import retrieval_metrics
from shared.retrieval.chunking import chunk_pages
from shared.retrieval.embeddings import get_embedder
from shared.retrieval.fusion import fuse, retrieve
from shared.retrieval.indexes import SearchIndex, build_faiss, tokenize
from shared.retrieval.pdf import extract_pages

NORTHWIND = PROJECT_ROOT / "data" / "northwind"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--top-k", type=int, default=4)
    parser.add_argument("--bm25-weight", type=float, default=0.3)
    parser.add_argument("--sweep", action="store_true")
    args = parser.parse_args()
    rows = [json.loads(line) for line in (NORTHWIND / "ground_truth.jsonl").read_text()
            .splitlines() if line.strip()]
    default = get_settings().embedder
    by_embedder = {kind: measure(rows, kind, args.top_k, args.bm25_weight)
                   for kind in dict.fromkeys([default, *EMBEDDERS])}
    figures = dict(by_embedder[default])
    figures.update(embedder=default, top_k=args.top_k, bm25_weight=args.bm25_weight,
                   hit_rate=figures["fused"]["hit_rate"], mrr=figures["fused"]["mrr"],
                   by_embedder=by_embedder,
                   command=f".venv/bin/python -m benchmarks.bench_retrieval_quality "
                           f"--top-k {args.top_k}")
    embedder = get_embedder()
    if args.sweep:
        figures["sweep"] = sweep(rows, embedder, args.top_k)
        figures["command"] += " --sweep"
    print(json.dumps({k: figures[k] for k in ("hit_rate", "mrr")}))
    machine.write("retrieval_quality", figures)


EMBEDDERS = ("torch-fp32", "onnx-fp32", "onnx-int8")  # the setting's choices, each measured


def measure(rows: list[dict], kind: str, top_k: int, bm25_weight: float) -> dict:
    """Hit rate and MRR of the fused retrieval and of each retriever alone, on a collection
    built (and queried) with embedder `kind`, as a batch computes them."""
    embedder = get_embedder(kind)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp))
        record = embedded_redis.start(settings)
        try:
            client = redis.Redis.from_url(record.info["url"])
            sources = [SourceDocument(p.name, p.read_bytes())
                       for p in sorted(NORTHWIND.glob("*.pdf"))]
            ingest(client, "nw", sources, None, None, embedder, (1000, 150), embedder_kind=kind)
            meta, index = load_index(client, "nw")
        finally:
            embedded_redis.stop(settings)
    results: dict[str, list[dict]] = {"fused": [], "bm25": [], "faiss_mmr": []}
    for i, row in enumerate(rows):
        _, cited = split_citations(row.get("reference") or row["truth"])
        question = {"id": f"q{i}", "sources": list(cited)}
        vector = embedder.embed([row["question"]])[0]
        ranked = {
            "fused": [h.chunk for h in retrieve(index, row["question"], vector, top_k=top_k,
                                                bm25_weight=bm25_weight)],
            "bm25": [c for c, _ in index.bm25_search(row["question"], top_k)],
            "faiss_mmr": index.mmr_search(vector, k=top_k),
        }
        for name, chunks in ranked.items():
            contexts = {"contexts": [{"document": index.chunks[c].document,
                                      "page": index.chunks[c].page} for c in chunks]}
            results[name].append({"question_id": question["id"],
                                  "retrieval": cited_rank(question, contexts)})
    return {**{name: retrieval_metrics(rs) for name, rs in results.items()},
            "chunks": len(index.chunks), "collection_embedder": meta.embedder_id()}


CHUNKINGS = ((1000, 150), (500, 100), (1500, 200))  # the default first
DEPTHS = (4, 10, 20, 50)


def sweep(rows: list[dict], embedder, top_k: int) -> dict:
    """Hit rate at top_k of each variant, per chunking; ceilings of each retriever alone."""
    pages = {p.name: extract_pages(p.read_bytes(), p.name) for p in sorted(NORTHWIND.glob("*.pdf"))}
    cited = [split_citations(row["truth"])[1] for row in rows]
    queries = embedder.embed([row["question"] for row in rows])
    out = {}
    for size, overlap in CHUNKINGS:
        chunks = [c for name, doc in pages.items() for c in chunk_pages(name, doc, size, overlap)]
        vectors = embedder.embed([c.text for c in chunks])
        index = SearchIndex(chunks, build_faiss(vectors), [tokenize(c.text) for c in chunks])
        titled = [f"{Path(c.document).stem.replace('_', ' ')}\n{c.text}" for c in chunks]
        titled_index = SearchIndex(chunks, build_faiss(embedder.embed(titled)),
                                   [tokenize(t) for t in titled])
        hits = _variants(rows, cited, queries, index, titled_index, top_k)
        out[f"{size}/{overlap}"] = {"chunks": len(chunks),
                                    **{k: sum(v) / len(v) for k, v in hits.items()}}
        print(f"{size}/{overlap}", json.dumps(out[f"{size}/{overlap}"]), flush=True)
    return out


def _variants(rows, cited, queries, index: SearchIndex, titled_index: SearchIndex,
              top_k: int) -> dict[str, list[bool]]:
    chunks = index.chunks
    hits: dict[str, list[bool]] = {}

    def record(name: str, ranking: list[int], pages_cited, depth: int = top_k,
               neighbours: bool = False) -> None:
        found = any(_cites(chunks[i], pages_cited, neighbours) for i in ranking[:depth])
        hits.setdefault(name, []).append(found)

    for q, row in enumerate(rows):
        text, vector = row["question"], queries[q]
        lexical = [i for i, _ in index.bm25_search(text, len(chunks))]
        dense = [i for i, _ in index.vector_search(vector, len(chunks))]
        mmr = index.mmr_search(vector, k=20, fetch_k=40)
        for weight in (0.3, 0.5, 0.7):
            record(f"fused_mmr_bm25w{weight}", _fuse(lexical, mmr, weight), cited[q])
            record(f"fused_similarity_bm25w{weight}", _fuse(lexical, dense, weight), cited[q])
        record("fused_mmr_one_chunk_per_page",
               _one_per_page(chunks, _fuse(lexical, mmr, 0.3)), cited[q])
        t_lex = [i for i, _ in titled_index.bm25_search(text, 20)]
        t_mmr = titled_index.mmr_search(vector, k=20, fetch_k=40)
        record("fused_mmr_document_name_in_chunks", _fuse(t_lex, t_mmr, 0.3), cited[q])
        for name, ranking in (("bm25", lexical), ("similarity", dense)):
            for depth in DEPTHS:
                record(f"{name}_at_{depth}", ranking, cited[q], depth)
            record(f"{name}_at_{top_k}_page_or_neighbour", ranking, cited[q], top_k, True)
        union = list(dict.fromkeys(lexical[:50] + dense[:50]))
        record("either_in_top_50", union, cited[q], len(union))
    return hits


def _fuse(lexical: list[int], semantic: list[int], bm25_weight: float, fetch_k: int = 20):
    return [h.chunk for h in fuse([lexical[:fetch_k], semantic[:fetch_k]],
                                  [bm25_weight, 1 - bm25_weight])]


def _one_per_page(chunks, ranking: list[int]) -> list[int]:
    seen: set = set()
    out = []
    for i in ranking:
        page = (chunks[i].document, chunks[i].page)
        if page not in seen:
            seen.add(page)
            out.append(i)
    return out


def _cites(chunk, pages_cited, neighbours: bool) -> bool:
    for source in pages_cited:
        document, _, page = source.rpartition("#page=")
        if chunk.document == document and abs(chunk.page - int(page)) <= (1 if neighbours else 0):
            return True
    return False


if __name__ == "__main__":
    main()
