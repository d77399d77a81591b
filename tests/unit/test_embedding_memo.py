"""The scoring embedder embeds a text once while it is remembered, and gives the same vectors."""

from __future__ import annotations

import numpy as np
import pytest

from shared.retrieval.embedding_memo import Remembering

pytestmark = pytest.mark.unit


class CountingEmbedder:
    """Vectors from the text's length and first letter; records every text it embedded."""

    dim = 3

    def __init__(self):
        self.embedded: list[str] = []
        self.threads_seen = []

    def embed(self, texts, progress=None, threads=None):
        self.embedded.extend(texts)
        self.threads_seen.append(threads)
        return np.array([[len(t), ord(t[0]) if t else 0, 1.0] for t in texts], dtype=np.float32)


def test_a_text_is_embedded_once_and_its_vector_is_what_the_embedder_gives():
    inner = CountingEmbedder()
    memo = Remembering(inner)
    first = memo.embed(["a context", "an answer", "a context"])
    again = memo.embed(["a context", "another answer"])
    assert inner.embedded == ["a context", "an answer", "another answer"]
    assert np.array_equal(first, CountingEmbedder().embed(["a context", "an answer", "a context"]))
    assert np.array_equal(again[0], first[0]) and again.shape == (2, 3)
    assert (memo.hits, memo.misses) == (2, 3)
    assert memo.dim == 3  # the wrapped embedder's attributes


def test_the_least_recently_used_text_goes_first_when_full():
    inner = CountingEmbedder()
    memo = Remembering(inner, capacity=2)
    memo.embed(["one", "two"])
    memo.embed(["one"])  # used again: "two" is now the oldest
    memo.embed(["three"])
    inner.embedded.clear()
    memo.embed(["one", "two", "three"])
    assert inner.embedded == ["two"]


def test_more_texts_than_it_can_hold_still_come_back_whole_and_the_cores_callback_passes_on():
    inner = CountingEmbedder()
    memo = Remembering(inner, capacity=1)

    def cores():
        return 1

    out = memo.embed(["x", "yy", "zzz"], threads=cores)
    assert out[:, 0].tolist() == [1, 2, 3] and inner.threads_seen == [cores]
    assert memo.embed([]).shape == (0, 3)
