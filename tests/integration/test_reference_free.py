"""Reference-free scores with the real scoring embedder, on answers whose support is known:
copied from the contexts, contradicting them (a negation, a changed number), off topic."""

from __future__ import annotations

import pytest

from shared.pipeline import reference_free
from shared.retrieval import embeddings

pytestmark = pytest.mark.integration

QUESTION = "Does Northwind Standard cover eye exams?"
CONTEXTS = [
    "Northwind Standard covers routine eye exams once every 12 months at in-network providers. "
    "Contact lenses and eyeglasses are not covered by the plan. Members can buy them at a "
    "discount of 20 percent through the vision partner.",
    "Preventive care such as annual physicals and immunizations is covered at no cost when "
    "you see an in-network provider.",
]


@pytest.fixture(scope="module")
def embedder():
    return embeddings.get_embedder("onnx-fp32")


def score(embedder, answer, contexts=CONTEXTS, question=QUESTION):
    return reference_free.scores(embedder, question, answer, contexts)


def test_an_answer_copied_from_its_contexts_is_grounded_and_relevant(embedder):
    result = score(embedder, "Northwind Standard covers routine eye exams once every 12 months "
                             "at in-network providers. Contact lenses and eyeglasses are not "
                             "covered by the plan.")
    assert result["groundedness"] == 1.0
    assert result["answer_relevance"] > 0.5
    # the eye exams passage bears on the question, the preventive care one does not
    assert result["context_relevance"] == 0.5


@pytest.mark.parametrize("answer", [
    "Northwind Standard does not cover routine eye exams at in-network providers.",
    "Northwind Standard covers routine eye exams once every 24 months at in-network providers.",
    "Contact lenses and eyeglasses are covered by the plan.",
])
def test_an_answer_contradicting_its_contexts_is_not_grounded(embedder, answer):
    assert score(embedder, answer)["groundedness"] == 0.0


def test_an_off_topic_answer_is_neither_grounded_nor_relevant(embedder):
    on_topic = score(embedder, "Yes, routine eye exams are covered once every 12 months.")
    off = score(embedder, "The Eiffel Tower was finished in 1889 for the World's Fair in Paris.")
    assert off["groundedness"] == 0.0
    assert off["answer_relevance"] < on_topic["answer_relevance"] - 0.3


def test_a_half_supported_answer_scores_half(embedder):
    result = score(embedder, "Northwind Standard covers routine eye exams once every 12 months. "
                             "The Eiffel Tower was finished in 1889 for the World's Fair.")
    assert result["groundedness"] == 0.5


def test_contexts_off_the_question_are_not_relevant(embedder):
    result = score(embedder, "Yes.", contexts=[
        CONTEXTS[0], "To pair a Bluetooth headset, open Settings, tap Connections, then tap "
                     "Bluetooth and choose the device from the list."])
    assert result["context_relevance"] == 0.5


def test_nothing_to_score_is_none_not_zero(embedder):
    assert score(embedder, "") == {"groundedness": None, "answer_relevance": None,
                                   "context_relevance": 0.5}
    assert score(embedder, "Yes, they are covered.", contexts=[])["groundedness"] is None
