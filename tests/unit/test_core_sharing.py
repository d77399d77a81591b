"""Scoring's embedder asks before every batch whether it may go on, and embeds on the calling
thread: the same batches, so the same vectors, as a plain call."""

from __future__ import annotations

import numpy as np
import pytest

from shared.pipeline.core_sharing import Yielding

pytestmark = pytest.mark.unit


class BatchRecorder:
    """Vectors from the text's length; records each call's texts and `threads` argument."""

    dim = 2
    batch_size = 2

    def __init__(self):
        self.calls: list[tuple[list[str], object]] = []

    def embed(self, texts, progress=None, threads=None):
        self.calls.append((list(texts), threads))
        return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)


def test_it_asks_before_every_batch_and_embeds_longest_first_on_this_thread():
    inner, asked = BatchRecorder(), []
    texts = ["bb", "a", "dddd", "ccc", "eeeee"]
    out = Yielding(inner, lambda: asked.append(1) or 1).embed(texts)
    assert out[:, 0].tolist() == [2, 1, 4, 3, 5]  # each row is its own text's vector
    assert [batch for batch, _ in inner.calls] == [["eeeee", "dddd"], ["ccc", "bb"], ["a"]]
    assert all(threads is None for _, threads in inner.calls)  # never the idle-priority path
    assert len(asked) == 3


def test_progress_is_told_after_every_batch_and_nothing_to_embed_asks_nothing():
    inner, asked, seen = BatchRecorder(), [], []
    Yielding(inner, lambda: asked.append(1) or 1).embed(["x", "yy", "zzz"],
                                                        progress=lambda d, t: seen.append((d, t)))
    assert seen == [(2, 3), (3, 3)]
    asked.clear()
    assert Yielding(inner, lambda: asked.append(1) or 1).embed([]).shape == (0, 2)
    assert asked == []
