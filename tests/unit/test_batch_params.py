"""How a batch that names no --top-k or --prompt gets each model's contexts and prompt."""

import pytest

from producer.batch_client import batch_params, per_model, per_model_contexts
from shared.config import PROJECT_ROOT, Settings
from shared.llm.catalog import load_catalog
from shared.llm.requests import SamplingOverrides

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


def params_for(prompt: str | None) -> dict:
    return batch_params(Settings(), None, 0.3, None, SamplingOverrides(), prompt)


def test_without_a_prompt_a_model_whose_catalog_names_one_answers_with_it():
    params = per_model(params_for(None), CATALOG, ["smollm2-135m", "gemma3-270m"])
    assert params["prompt"]["name"] == "sentences"
    assert {m: t["name"] for m, t in params["prompts_per_model"].items()} == {
        "gemma3-270m": "study"}
    assert per_model(params, CATALOG, ["smollm2-135m", "gemma3-270m"]) == params


def test_a_named_prompt_applies_to_every_model():
    params = per_model(params_for("ragfleet"), CATALOG, ["smollm2-135m", "gemma3-270m"])
    assert params["prompt"]["name"] == "ragfleet" and "prompts_per_model" not in params


def test_a_prompt_set_for_the_fleet_applies_to_every_model(monkeypatch):
    monkeypatch.setenv("RAGFLEET_PROMPT", "sentences")
    params = per_model(batch_params(Settings(), None, 0.3, None, SamplingOverrides(), None),
                       CATALOG, ["smollm2-135m", "gemma3-270m"])
    assert params["prompt"]["name"] == "sentences" and "prompts_per_model" not in params
