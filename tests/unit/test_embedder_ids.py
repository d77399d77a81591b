"""Which embedders' vectors can be compared, and which embedder a collection's queries get."""

from __future__ import annotations

import json

import pytest

from shared.errors import RagfleetError, UsageError
from shared.retrieval import embeddings
from shared.state.collection_store import Manifest

pytestmark = pytest.mark.unit

TORCH = "torch-fp32:all-MiniLM-L6-v2"
ONNX = "onnx-fp32:all-MiniLM-L6-v2"
INT8 = "onnx-int8:all-MiniLM-L6-v2"


class Named:
    def __init__(self, identifier: str | None, name: str = "all-MiniLM-L6-v2"):
        if identifier:
            self.id = identifier
        self.name = name


@pytest.mark.parametrize("a, b, comparable", [
    (TORCH, ONNX, True), (ONNX, TORCH, True), (ONNX, ONNX, True), (INT8, INT8, True),
    (INT8, ONNX, False), (TORCH, INT8, False),
    (ONNX, "onnx-fp32:other-model", False), ("torch-fp32:word-hash-16", "torch-fp32:other", False),
])
def test_fp32_vectors_of_either_backend_compare_int8_only_with_int8(a, b, comparable):
    assert embeddings.interchangeable(a, b) is comparable


def test_an_embedder_that_does_not_say_is_fp32_of_its_name():
    assert embeddings.embedder_id(Named(None, "word-hash-16")) == "torch-fp32:word-hash-16"
    assert embeddings.embedder_id(Named(INT8)) == INT8


def test_matching_keeps_the_workers_embedder_when_its_vectors_compare(monkeypatch):
    monkeypatch.setattr(embeddings, "get_embedder",
                        lambda kind=None: pytest.fail(f"loaded {kind}"))
    onnx = Named(ONNX)
    assert embeddings.matching(onnx, TORCH) is onnx  # an old (torch) collection, no torch here
    fake = Named(None, "word-hash-16")
    assert embeddings.matching(fake, "torch-fp32:word-hash-16") is fake


def test_matching_loads_the_collections_embedder_otherwise(monkeypatch):
    int8 = Named(INT8)
    asked = []
    monkeypatch.setattr(embeddings, "get_embedder", lambda kind=None: asked.append(kind) or int8)
    assert embeddings.matching(Named(ONNX), INT8) is int8 and asked == ["onnx-int8"]
    with pytest.raises(RagfleetError, match="which this worker does not have"):
        embeddings.matching(Named(ONNX), "onnx-fp32:bge-small")
    # int8 asked for, something else came back (it fell back): not comparable, say so
    monkeypatch.setattr(embeddings, "get_embedder", lambda kind=None: Named(ONNX))
    with pytest.raises(RagfleetError, match="this worker has onnx-fp32"):
        embeddings.matching(Named(TORCH), INT8)


def test_unknown_embedder_setting_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown embedder"):
        embeddings.load("onnx-fp16")


def test_old_manifests_read_as_torch_fp32_and_new_ones_say_theirs():
    fields = {"name": "docs", "version": 3, "documents": [], "chunks": 0,
              "embedding_model": "all-MiniLM-L6-v2", "dim": 384, "chunk_size": 1000,
              "chunk_overlap": 150}
    old = Manifest(**json.loads(json.dumps(fields)))
    assert old.embedder is None and old.embedder_id() == TORCH
    new = Manifest(**fields, embedder=INT8)
    assert Manifest(**json.loads(new.to_json())).embedder_id() == INT8
