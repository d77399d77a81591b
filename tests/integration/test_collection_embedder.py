"""A collection records the embedder that built it, and its queries (and its next versions)
embed with one whose vectors match: fp32 on either backend, an int8 collection in int8.
Real Redis, real embedders on the first pages of a Northwind plan."""

from __future__ import annotations

import json

import numpy as np
import pytest
import redis

from shared.config import Settings
from shared.errors import RagfleetError
from shared.pipeline import answering
from shared.pipeline.ingestion import SourceDocument, index_cache, ingest, load_index
from shared.retrieval import embeddings
from shared.state import collection_store, keys
from tests.pdf_samples import PLUS_PDF, first_pages_pdf

pytestmark = pytest.mark.integration

DEFAULTS = (1000, 150)
FP32 = "onnx-fp32:all-MiniLM-L6-v2"
INT8 = "onnx-int8:all-MiniLM-L6-v2"


@pytest.fixture()
def client(redis_url) -> redis.Redis:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    return client


@pytest.fixture(scope="module")
def fp32():
    embedder = embeddings.get_embedder("onnx-fp32")
    assert embedder.id == FP32
    return embedder


def pages(count: int = 3, source=None) -> SourceDocument:
    data = first_pages_pdf(count) if source is None else first_pages_pdf(count, source)
    return SourceDocument("plan.pdf" if source is None else source.name, data)


class Spy:
    """Wraps an embedder, counting the texts it embeds."""

    def __init__(self, inner):
        self.inner, self.texts, self.vectors = inner, [], {}
        self.id, self.name, self.dim = inner.id, inner.name, inner.dim

    def embed(self, texts, progress=None, threads=None):
        self.texts += texts
        vectors = self.inner.embed(texts, progress=progress, threads=threads)
        self.vectors.update(zip(texts, vectors))
        return vectors


def batch_for(collection: str, version: int) -> dict:
    return {"collection": collection, "version": version,
            "params": {"top_k": 3, "bm25_weight": 0.3}}


def test_a_collection_records_its_embedder_and_queries_use_it(client, fp32):
    report = ingest(client, "docs", [pages()], None, None, fp32, DEFAULTS)
    meta = collection_store.manifest(client, "docs")
    assert meta.embedder == meta.embedder_id() == FP32 and meta.embedding_model == fp32.name
    spy = Spy(fp32)
    retrieved = answering.retrieve_contexts(index_cache(client), spy, batch_for("docs", 1),
                                            "What is the deductible?")
    assert spy.texts == ["What is the deductible?"] and retrieved["contexts"]
    assert report.version == 1


def test_an_old_manifest_reads_as_torch_fp32_and_fp32_onnx_queries_it(client, fp32):
    """Manifests from before the field: their vectors are torch fp32, interchangeable with
    ONNX fp32 (no torch loaded for the query)."""
    ingest(client, "old", [pages()], None, None, fp32, DEFAULTS)
    key = keys.collection_version_key("old", 1, "manifest")
    raw = json.loads(client.get(key))
    del raw["embedder"]
    client.set(key, json.dumps(raw))
    meta = collection_store.manifest(client, "old")
    assert meta.embedder is None and meta.embedder_id() == "torch-fp32:all-MiniLM-L6-v2"
    spy = Spy(fp32)
    answering.retrieve_contexts(index_cache(client), spy, batch_for("old", 1), "dental")
    assert spy.texts == ["dental"]
    # its next version is built on it with the same (fp32) vectors and says which made them
    ingest(client, "old", [pages(), pages(2, PLUS_PDF)], None, None, fp32, DEFAULTS)
    assert collection_store.manifest(client, "old").embedder == FP32


def test_an_int8_collection_is_built_and_queried_in_int8(client, fp32):
    """The int8 setting builds new collections in int8; queries of one use int8 even when the
    worker's (scoring) embedder is fp32, and so do the chunks of its next versions."""
    int8 = embeddings.get_embedder("onnx-int8")
    spy = Spy(int8)
    embeddings._loaded["onnx-int8"] = spy  # this process's int8 embedder, watched
    try:
        ingest(client, "fast", [pages()], None, None, fp32, DEFAULTS, embedder_kind="onnx-int8")
        meta, index = load_index(client, "fast")
        assert meta.embedder == INT8
        texts = [c.text for c in index.chunks]
        # the very vectors the int8 embedder returned (not recomputed: int8 activations are
        # quantized per batch, so a text's vector depends on the texts batched with it, and
        # ingestion batches chunks as pages arrive)
        assert sorted(spy.texts) == sorted(texts)
        assert np.array_equal(index.vectors, np.stack([spy.vectors[t] for t in texts]))
        assert np.abs(index.vectors - fp32.embed(texts)).max() > 1e-3  # not fp32's vectors

        spy.texts = []
        fp32_spy = Spy(fp32)
        answering.retrieve_contexts(index_cache(client), fp32_spy, batch_for("fast", 1),
                                    "What is the deductible?")
        assert spy.texts == ["What is the deductible?"] and fp32_spy.texts == []
        # a second document: embedded in int8 too, whatever embedder the worker passes
        ingest(client, "fast", [pages(), pages(2, PLUS_PDF)], None, None, fp32, DEFAULTS)
        assert collection_store.manifest(client, "fast").embedder == INT8
        assert fp32_spy.texts == [] and len(spy.texts) > 1
    finally:
        embeddings._loaded["onnx-int8"] = int8


def test_an_int8_collection_is_not_queried_in_fp32_where_int8_is_missing(client, fp32,
                                                                        monkeypatch):
    ingest(client, "fast", [pages()], None, None, fp32, DEFAULTS, embedder_kind="onnx-int8")

    def unavailable(kind):
        raise RagfleetError(f"the {kind} embedder is unavailable: no onnxruntime")

    monkeypatch.setattr(embeddings, "load", unavailable)
    monkeypatch.delitem(embeddings._loaded, "onnx-int8", raising=False)
    with pytest.raises(RagfleetError, match="onnx-int8 embedder is unavailable"):
        answering.retrieve_contexts(index_cache(client), fp32, batch_for("fast", 1), "dental")
    # a new collection asked for in int8 is built in fp32 instead: never fail an ingestion
    ingest(client, "other", [pages()], None, None, fp32, DEFAULTS, embedder_kind="onnx-int8")
    assert collection_store.manifest(client, "other").embedder == FP32


def test_the_ingestion_job_builds_with_the_setting(client, fp32):
    from shared.pipeline import ingest_job
    from shared.state import jobs, uploads

    data = first_pages_pdf(2)
    jobs.create(client, "j-int8", "int8docs", [{"name": "plan.pdf"}], {})
    uploads.save(client, "j-int8", {0: data}, ttl_s=600)
    done = ingest_job.run(client, "j-int8", fp32, Settings(embedder="onnx-int8"))
    assert done["state"] == jobs.DONE, done
    assert collection_store.manifest(client, "int8docs").embedder == INT8
