import pytest

from shared.retrieval.chunking import chunk_pages, split_text
from shared.retrieval.pdf import Page

pytestmark = pytest.mark.unit

TEXT = ("Balance billing happens when a provider bills you for the difference. " * 12 + "\n\n"
        + "In-network providers accept the plan's payment. " * 10)


def test_chunks_respect_size_and_cover_the_text():
    chunks = split_text(TEXT, size=200, overlap=40)
    assert len(chunks) > 3
    assert all(0 < len(c) <= 200 for c in chunks)
    joined = " ".join(chunks)
    for sentence in ("Balance billing happens", "In-network providers accept"):
        assert sentence in joined


def test_consecutive_chunks_overlap():
    chunks = split_text(TEXT, size=200, overlap=60)
    shared = [a[-30:].strip() in b for a, b in zip(chunks, chunks[1:])]
    assert sum(shared) >= len(shared) // 2


def test_paragraph_break_is_preferred():
    text = "a" * 90 + "\n\n" + "b" * 90
    assert split_text(text, size=100, overlap=10) == ["a" * 90, "b" * 90]


def test_a_word_longer_than_the_chunk_is_cut():
    chunks = split_text("x" * 250, size=100, overlap=0)
    assert [len(c) for c in chunks] == [100, 100, 50]


def test_overlap_must_be_smaller_than_size():
    with pytest.raises(ValueError):
        split_text(TEXT, size=100, overlap=100)


def test_chunks_keep_their_page():
    pages = [Page(1, "alpha " * 50), Page(2, ""), Page(3, "gamma " * 50)]
    chunks = chunk_pages("doc.pdf", pages, size=120, overlap=20)
    assert {c.page for c in chunks} == {1, 3}
    assert all(("alpha" in c.text) == (c.page == 1) for c in chunks)
    assert all(c.document == "doc.pdf" for c in chunks)
