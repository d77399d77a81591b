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
