"""Ingestion in-process on the real Northwind PDFs: real Redis, real embeddings, no Celery."""

from __future__ import annotations

import pytest

from shared.errors import UsageError
from shared.pipeline.ingestion import SourceDocument, index_cache, ingest, load_index
from shared.retrieval.embeddings import get_embedder
from shared.retrieval.pdf import BadDocument, extract_pages
from shared.state import collection_store, keys
from tests.pdf_samples import PAGE7_PHRASE, PLUS_PDF, STANDARD_PDF, truncated_pdf

pytestmark = pytest.mark.integration

DEFAULTS = (1000, 150)
PHRASE = PAGE7_PHRASE


def standard() -> SourceDocument:
    return SourceDocument(STANDARD_PDF.name, STANDARD_PDF.read_bytes())


@pytest.fixture(scope="module")
def embedder():
    return get_embedder()


@pytest.fixture(scope="module")
def northwind(redis_url, embedder):
    import redis

    client = redis.Redis.from_url(redis_url)
    collection_store.delete(client, "nw") if collection_store.current_version(client, "nw") else None
    report = ingest(client, "nw", [standard()], None, None, embedder, DEFAULTS)
    return client, report


def test_standard_plan_has_104_pages_and_chunks_carry_their_page(northwind):
    client, report = northwind
    assert report.changed and report.version >= 1
    (doc,) = report.documents
    assert doc["pages"] == 104 and doc["status"] == "added"
    pages = {p.number: p.text for p in extract_pages(STANDARD_PDF.read_bytes(), "std")}
    meta, index = load_index(client, "nw")
    assert meta.chunks == len(index.chunks) == report.chunks > 104
    assert meta.embedding_model == "all-MiniLM-L6-v2" and meta.chunk_size == 1000
    for chunk in index.chunks[::7]:
        assert chunk.text[:80] in pages[chunk.page]  # the chunk really is on its page
    phrase_pages = {n for n, text in pages.items() if PHRASE in " ".join(text.split())}
    assert phrase_pages == {7}


def test_known_phrase_is_found_on_its_page_by_bm25_and_faiss(northwind, embedder):
    client, _ = northwind
    _, index = load_index(client, "nw")
    bm25_top = index.bm25_search(PHRASE, 1)[0][0]
    assert index.chunks[bm25_top].page == 7  # exact words: BM25 ranks the page first
    # meaning: neighbouring pages on balance billing (6, 8) come close; page 7 is in the top 3
    faiss_top3 = index.vector_search(embedder.embed([PHRASE])[0], 3)
    assert 7 in {index.chunks[i].page for i, _ in faiss_top3}


def test_same_content_again_adds_nothing(northwind, embedder):
    client, first = northwind
    again = ingest(client, "nw", [standard()], None, None, embedder, DEFAULTS)
    assert not again.changed and again.version == first.version
    assert again.documents[0]["status"] == "unchanged"
    assert collection_store.manifest(client, "nw").chunks == first.chunks


def test_failed_ingestion_keeps_the_previous_version(northwind, embedder):
    client, first = northwind
    before = collection_store.manifest(client, "nw")
    bad = SourceDocument("broken.pdf", truncated_pdf())
    with pytest.raises(BadDocument, match="corrupt or truncated"):
        ingest(client, "nw", [bad], None, None, embedder, DEFAULTS)
    with pytest.raises(UsageError, match="chunk size 1000"):
        ingest(client, "nw", [SourceDocument(PLUS_PDF.name, PLUS_PDF.read_bytes())], 500, None,
               embedder, DEFAULTS)
    after = collection_store.manifest(client, "nw")
    assert after.__dict__ == before.__dict__


def test_a_collection_over_redis_value_limit_is_refused_before_anything_is_written(
        northwind, embedder, monkeypatch):
    client, first = northwind
    before = collection_store.manifest(client, "nw")
    counter = client.get(keys.collection_version_counter("nw"))
    # the real ceiling is 512 MiB a value (about 349,000 chunks); one of a few KiB shows the rule
    monkeypatch.setattr(collection_store, "MAX_PART_BYTES", 64 * 1024)
    plus = SourceDocument(PLUS_PDF.name, PLUS_PDF.read_bytes())
    with pytest.raises(collection_store.CollectionTooLarge,
                       match=r"'nw' is too large for Redis: its \w+ part would be [\d.]+ MiB, "
                             r"over Redis's limit of 0.1 MiB for one value \(about \d+ chunks; this "
                             r"version has [\d,]+\); split the documents"):
        ingest(client, "nw", [standard(), plus], None, None, embedder, DEFAULTS)
    assert collection_store.manifest(client, "nw").__dict__ == before.__dict__
    assert client.get(keys.collection_version_counter("nw")) == counter  # no number taken


def test_second_document_makes_a_new_version_and_readers_reload_once(northwind, embedder):
    client, first = northwind
    cache = index_cache(client)
    assert cache.get("nw")[0].version == first.version
    cache.get("nw")
    assert cache.loads == 1  # kept in memory while the version stays current
    plus = SourceDocument(PLUS_PDF.name, PLUS_PDF.read_bytes())
    report = ingest(client, "nw", [standard(), plus], None, None, embedder, DEFAULTS)
    assert report.version == first.version + 1
    statuses = {d["name"]: d["status"] for d in report.documents}
    assert statuses == {STANDARD_PDF.name: "unchanged", PLUS_PDF.name: "added"}
    meta, index = cache.get("nw")
    assert cache.loads == 2 and meta.version == report.version
    assert {d["name"]: d["pages"] for d in meta.documents} == {STANDARD_PDF.name: 104,
                                                               PLUS_PDF.name: 109}
    assert {c.document for c in index.chunks} == {STANDARD_PDF.name, PLUS_PDF.name}
    # the Standard chunks were reused, not re-embedded into different vectors
    assert len(index.chunks) == first.chunks + report.documents[1]["chunks"]


def test_embedding_with_more_threads_gives_the_same_vectors_and_puts_threads_back(embedder):
    import torch

    texts = [p.text for p in extract_pages(STANDARD_PDF.read_bytes(), "std")[:12]]
    before = torch.get_num_threads()
    plain = embedder.embed(texts)
    asked = []
    both = embedder.embed(texts, threads=lambda: asked.append(2) or 2)
    assert asked and torch.get_num_threads() == before
    assert abs(plain - both).max() < 1e-5
    # texts are embedded longest first, but each vector lands in its text's row
    single = embedder.embed([texts[3]])[0]
    assert abs(plain[3] - single).max() < 1e-5


class RecordingEmbedder:
    """The real embedder, recording how far extraction had got at each call."""

    def __init__(self, real, seen: list):
        self.real, self.seen = real, seen
        self.name, self.dim = real.name, real.dim
        self.id = getattr(real, "id", None)

    def __getattr__(self, attr):
        return getattr(self.real, attr)

    def embed(self, texts, progress=None, threads=None):
        self.seen.append(("embed", len(texts)))
        return self.real.embed(texts, progress=progress, threads=threads)


def test_pages_are_embedded_while_the_rest_are_read_with_the_same_result(redis_url, embedder,
                                                                          monkeypatch):
    """Issue 16: extraction is no longer a serial phase in front of embedding. Embedding starts
    while pages are still being read, and the collection equals one built page by page first."""
    import numpy as np
    import redis

    from shared.pipeline import ingestion
    from shared.retrieval.chunking import chunk_pages
    from tests.pdf_samples import first_pages_pdf

    client = redis.Redis.from_url(redis_url)
    data = first_pages_pdf(40)
    events: list = []
    monkeypatch.setattr(ingestion, "EMBED_WINDOW", 8)
    report = ingest(client, "overlap", [SourceDocument("forty.pdf", data)], None, None,
                    RecordingEmbedder(embedder, events), (1000, 150),
                    progress=lambda stage, done, total: events.append((stage, done))
                    if stage == "extract" else None)
    first_embed = next(i for i, e in enumerate(events) if e[0] == "embed")
    read_before = max((done for stage, done in events[:first_embed] if stage == "extract"),
                      default=0)
    assert read_before < 40  # the first chunks were embedded before the last page was read
    assert sum(n for stage, n in events if stage == "embed") == report.chunks
    assert {"extract", "embed", "extract_and_embed"} <= set(report.timings_s)

    serial = chunk_pages("forty.pdf", extract_pages(data, "forty.pdf"), 1000, 150)
    _, index = load_index(client, "overlap")
    assert [(c.page, c.text) for c in index.chunks] == [(c.page, c.text) for c in serial]
    expected = embedder.embed([c.text for c in serial])
    assert np.abs(index.vectors - expected).max() < 1e-5
