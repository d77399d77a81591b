"""How a batch that names no --top-k gets each model's number of contexts."""

import pytest

from producer.batch_client import per_model_contexts
from shared.config import PROJECT_ROOT
from shared.llm.catalog import load_catalog

pytestmark = pytest.mark.unit

CATALOG = load_catalog(PROJECT_ROOT / "models" / "catalog.toml")


def test_without_top_k_each_model_gets_its_catalog_contexts_and_retrieval_the_most():
    params = per_model_contexts({"top_k": None}, CATALOG, ["smollm2-135m", "qwen2.5-coder-1.5b"])
    assert params["contexts_per_model"] == {"smollm2-135m": 2, "qwen2.5-coder-1.5b": 4}
    assert params["top_k"] == 4


def test_the_bundled_models_alone_retrieve_only_what_they_use():
    params = per_model_contexts({"top_k": None}, CATALOG, ["smollm2-135m", "gemma3-270m"])
    assert params["top_k"] == 2


def test_a_named_top_k_applies_to_every_model():
    params = {"top_k": 3}
    assert per_model_contexts(params, CATALOG, ["smollm2-135m", "qwen2.5-coder-1.5b"]) == params
