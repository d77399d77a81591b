"""Ensemble retrieval: BM25 and FAISS (maximal marginal relevance) fused by weighted reciprocal
rank fusion, score = sum of w_i / (60 + rank_i) with ranks from 1, as LangChain's
EnsembleRetriever does; then cut to top-k (the study's pipeline returned every fused chunk)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shared.retrieval.indexes import SearchIndex

RRF_K = 60


@dataclass(frozen=True)
class Hit:
    chunk: int  # index into the collection version's chunks
    score: float


def fuse(rankings: list[list[int]], weights: list[float], k: int = RRF_K) -> list[Hit]:
    """Weighted reciprocal-rank fusion of several rankings (best first) of chunk indexes.
    Ties keep the order of first appearance, as LangChain's does."""
    if len(rankings) != len(weights):
        raise ValueError("one weight per ranking")
    scores: dict[int, float] = {}
    for ranking, weight in zip(rankings, weights):
        for rank, chunk in enumerate(ranking, start=1):
            scores[chunk] = scores.get(chunk, 0.0) + weight / (k + rank)
    order = sorted(scores, key=lambda c: -scores[c])  # sorted() is stable
    return [Hit(c, scores[c]) for c in order]


def retrieve(index: SearchIndex, query: str, query_vector: np.ndarray, top_k: int = 4,
             bm25_weight: float = 0.3, fetch_k: int = 20) -> list[Hit]:
    """The top_k chunks for a query: each retriever proposes fetch_k, fusion ranks them."""
    if not 0 <= bm25_weight <= 1:
        raise ValueError("bm25_weight must be between 0 and 1")
    fetch_k = max(fetch_k, top_k)  # fewer candidates than top_k would cut the answer short
    lexical = [i for i, _ in index.bm25_search(query, fetch_k)]
    semantic = index.mmr_search(query_vector, k=fetch_k, fetch_k=max(fetch_k, 2 * fetch_k))
    return fuse([lexical, semantic], [bm25_weight, 1 - bm25_weight])[:top_k]
