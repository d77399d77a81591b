import pytest

from shared.retrieval.fusion import fuse

pytestmark = pytest.mark.unit


def test_weighted_rrf_matches_a_hand_worked_example():
    # BM25 ranks c2, c0, c1; FAISS ranks c0, c3. Weights 0.3 / 0.7, k = 60, ranks from 1:
    # c0 = 0.3/62 + 0.7/61 = 0.0163143...   c2 = 0.3/61 = 0.0049180...
    # c3 = 0.7/62 = 0.0112903...            c1 = 0.3/63 = 0.0047619...
    hits = fuse([[2, 0, 1], [0, 3]], [0.3, 0.7])
    assert [h.chunk for h in hits] == [0, 3, 2, 1]
    assert hits[0].score == pytest.approx(0.3 / 62 + 0.7 / 61)
    assert hits[1].score == pytest.approx(0.7 / 62)
    assert hits[2].score == pytest.approx(0.3 / 61)
    assert hits[3].score == pytest.approx(0.3 / 63)


def test_equal_weights_tie_keeps_first_seen_order():
    hits = fuse([[5], [7]], [0.5, 0.5])
    assert [h.chunk for h in hits] == [5, 7]


def test_one_weight_per_ranking():
    with pytest.raises(ValueError):
        fuse([[1]], [0.3, 0.7])


def test_top_k_above_the_candidate_count_still_returns_top_k():
    # issue 14: each retriever proposed 20, so --top-k 30 got 20 hits
    import numpy as np

    from shared.retrieval.chunking import Chunk
    from shared.retrieval.fusion import retrieve
    from shared.retrieval.indexes import SearchIndex, build_faiss, tokenize

    chunks = [Chunk("a.pdf", i + 1, f"page number {i}") for i in range(30)]
    vectors = np.random.default_rng(0).normal(size=(30, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = SearchIndex(chunks, build_faiss(vectors), [tokenize(c.text) for c in chunks])
    # no word in common: BM25 proposes nothing, so FAISS alone must bring 30
    hits = retrieve(index, "deductible", vectors[0], top_k=30)
    assert len(hits) == 30 and len({h.chunk for h in hits}) == 30
    assert len(retrieve(index, "deductible", vectors[0], top_k=4)) == 4
