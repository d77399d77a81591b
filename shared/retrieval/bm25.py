"""BM25 Okapi with exactly rank_bm25's scoring, precomputed into a sparse matrix.

rank_bm25 scores every document in Python for every query (about 200 ms at 50k chunks on a
small machine). The score of a (document, term) pair does not depend on the query, so it is
computed once here; a query then sums a few sparse columns. Same formula, same idf floor for
terms in more than half the documents (epsilon times the mean idf), same treatment of a term
repeated in the query: the scores equal rank_bm25's (tests/integration/test_bm25.py).
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
from scipy import sparse


class BM25Okapi:
    def __init__(self, corpus: list[list[str]], k1: float = 1.5, b: float = 0.75,
                 epsilon: float = 0.25):
        self.k1, self.b, self.epsilon = k1, b, epsilon
        self.corpus_size = len(corpus)
        self.vocabulary: dict[str, int] = {}
        # one small array per document, not Python lists of every posting: at 100k chunks the
        # lists alone took over a gigabyte while building
        row_parts, col_parts, tf_parts = [], [], []
        doc_freq: Counter = Counter()
        doc_len = np.zeros(len(corpus), dtype=np.float64)
        for row, document in enumerate(corpus):
            doc_len[row] = len(document)
            counts = Counter(document)
            doc_freq.update(counts.keys())
            vocab = self.vocabulary
            col_parts.append(np.fromiter((vocab.setdefault(t, len(vocab)) for t in counts),
                                         dtype=np.int32, count=len(counts)))
            tf_parts.append(np.fromiter(counts.values(), dtype=np.float32, count=len(counts)))
            row_parts.append(np.full(len(counts), row, dtype=np.int32))
        self.avgdl = float(doc_len.sum() / max(1, self.corpus_size))
        self.idf = self._idf(doc_freq)
        rows_a = np.concatenate(row_parts) if row_parts else np.zeros(0, np.int32)
        cols_a = np.concatenate(col_parts) if col_parts else np.zeros(0, np.int32)
        tf = np.concatenate(tf_parts).astype(np.float64) if tf_parts else np.zeros(0)
        norm = self.k1 * (1 - self.b + self.b * doc_len[rows_a] / (self.avgdl or 1.0))
        values = self.idf[cols_a] * tf * (self.k1 + 1) / (tf + norm)
        self.matrix = sparse.csc_matrix((values, (rows_a, cols_a)),
                                        shape=(self.corpus_size, len(self.vocabulary)))

    def _idf(self, doc_freq: Counter) -> np.ndarray:
        idf = np.zeros(len(self.vocabulary), dtype=np.float64)
        for term, column in self.vocabulary.items():
            n = doc_freq[term]
            idf[column] = math.log(self.corpus_size - n + 0.5) - math.log(n + 0.5)
        if len(idf):
            floor = self.epsilon * float(idf.mean())  # rank_bm25: negative idf becomes eps * mean
            idf[idf < 0] = floor
        return idf

    def get_scores(self, query: list[str]) -> np.ndarray:
        counts = Counter(t for t in query if t in self.vocabulary)
        if not counts:
            return np.zeros(self.corpus_size)
        columns = [self.vocabulary[t] for t in counts]
        weights = np.asarray(list(counts.values()), dtype=np.float64)
        return np.asarray(self.matrix[:, columns] @ weights).ravel()
