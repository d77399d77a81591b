"""The two retrieval indexes of a collection version: FAISS (inner product over normalised
embeddings) and BM25 (rank_bm25's Okapi scoring, precomputed sparse). Serialised with the
libraries' own formats and JSON, no pickle."""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass

import numpy as np

from shared.retrieval.chunking import Chunk

_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def tokenize(text: str) -> list[str]:
    """BM25 tokens: lower case, punctuation stripped. Interned: a collection repeats a few
    thousand words millions of times, and one string per word, not per use, saves most of the
    index's memory (1.4 GB at 100k chunks before, see BENCHMARKS.md)."""
    return [sys.intern(t) for t in _WORD.findall(text.lower())]


def build_faiss(vectors: np.ndarray):
    import faiss

    index = faiss.IndexFlatIP(vectors.shape[1])
    if len(vectors):
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def faiss_to_bytes(index) -> bytes:
    import faiss

    return faiss.serialize_index(index).tobytes()


def faiss_from_bytes(data: bytes):
    import faiss

    return faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))


@dataclass
class SearchIndex:
    """A loaded collection version: chunks, their vectors, FAISS and BM25, ready to query."""

    chunks: list[Chunk]
    faiss_index: object
    tokens: list[list[str]]

    def __post_init__(self):
        import faiss

        from shared.retrieval.bm25 import BM25Okapi

        self.bm25 = BM25Okapi(self.tokens or [[]])
        n, d = self.faiss_index.ntotal, self.faiss_index.d
        # a view of the flat index's own storage (for MMR), not a second copy of every vector
        self.vectors = (faiss.rev_swig_ptr(self.faiss_index.get_xb(), n * d).reshape(n, d)
                        if n else np.zeros((0, d), np.float32))

    def __len__(self) -> int:
        return len(self.chunks)

    def bm25_search(self, query: str, k: int) -> list[tuple[int, float]]:
        """Chunk indexes with their BM25 scores, best first; chunks sharing no term are left out."""
        terms = tokenize(query)
        if not terms or not self.chunks:
            return []
        scores = self.bm25.get_scores(terms)
        if k < len(scores):  # partial sort: O(n) to find the best k of 100k chunks
            best = np.argpartition(-scores, k)[:k]
            top = best[np.lexsort((best, -scores[best]))]  # by score, ties by position
        else:
            top = np.argsort(-scores, kind="stable")
        return [(int(i), float(scores[i])) for i in top[:k] if scores[i] > 0]

    def vector_search(self, query_vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        if not self.chunks:
            return []
        scores, ids = self.faiss_index.search(query_vector.reshape(1, -1).astype(np.float32),
                                              min(k, len(self.chunks)))
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]

    def mmr_search(self, query_vector: np.ndarray, k: int, fetch_k: int = 20,
                   lambda_mult: float = 0.5) -> list[int]:
        """Maximal marginal relevance over the fetch_k nearest: relevant and not redundant
        (LangChain's defaults: fetch 20, lambda 0.5)."""
        candidates = [i for i, _ in self.vector_search(query_vector, max(k, fetch_k))]
        if not candidates:
            return []
        vecs = self.vectors[candidates]
        relevance = vecs @ query_vector.astype(np.float32)
        chosen: list[int] = []
        while len(chosen) < min(k, len(candidates)):
            if chosen:
                redundancy = (vecs @ vecs[chosen].T).max(axis=1)
            else:
                redundancy = np.zeros(len(candidates), dtype=np.float32)
            score = lambda_mult * relevance - (1 - lambda_mult) * redundancy
            score[chosen] = -np.inf
            chosen.append(int(np.argmax(score)))
        return [candidates[i] for i in chosen]


def encode(chunks: list[Chunk], vectors: np.ndarray, tokens: list[list[str]]) -> dict[str, bytes]:
    """A collection version's index parts as bytes, for storing (no pickle)."""
    return {
        "chunks": json.dumps([c.to_json() for c in chunks]).encode(),
        "faiss": faiss_to_bytes(build_faiss(vectors)),
        "bm25": tokens_to_json(tokens),
    }


def decode(parts: dict[str, bytes]) -> SearchIndex:
    """The stored parts of a collection version, ready to search."""
    chunks = [Chunk(**c) for c in json.loads(parts["chunks"])]
    return SearchIndex(chunks, faiss_from_bytes(parts["faiss"]), tokens_from_json(parts["bm25"]))


def tokens_to_json(tokens: list[list[str]]) -> bytes:
    return json.dumps(tokens, separators=(",", ":")).encode()


def tokens_from_json(data: bytes) -> list[list[str]]:
    return [[sys.intern(t) for t in doc] for doc in json.loads(data)]
