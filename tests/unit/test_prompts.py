import pytest

from shared.retrieval.prompts import SYSTEM_PROMPT, QuestionTooLong, fit_prompt, messages_for

pytestmark = pytest.mark.unit

CONTEXTS = [{"document": "plan.pdf", "page": p, "text": f"page{p} " + "word " * 100}
            for p in (7, 3, 9)]


def count_words(messages):
    """A stand-in tokenizer for pure logic: one token per word."""
    return sum(len(m.content.split()) for m in messages)


def test_system_text_is_fixed_and_first():
    a, b = messages_for("Q1?", CONTEXTS), messages_for("Q2?", CONTEXTS[:1])
    assert a[0].role == b[0].role == "system" and a[0].content == b[0].content == SYSTEM_PROMPT
    assert a[1].content.startswith("Context:\npage7 ") and a[1].content.endswith("Question: Q1?")


def test_everything_kept_when_it_fits():
    _, kept, tokens = fit_prompt("Q?", CONTEXTS, count_words, n_ctx=2048, max_tokens=512)
    assert kept == 3 and tokens == count_words(messages_for("Q?", CONTEXTS))


def test_lowest_ranked_contexts_are_dropped_first():
    full = count_words(messages_for("Q?", CONTEXTS))
    messages, kept, tokens = fit_prompt("Q?", CONTEXTS, count_words, n_ctx=full - 50 + 100,
                                        max_tokens=100)
    assert kept == 2 and tokens <= full - 50
    assert "page7" in messages[1].content and "page3" in messages[1].content
    assert "page9" not in messages[1].content


def test_question_that_cannot_fit_is_an_error():
    with pytest.raises(QuestionTooLong):
        fit_prompt("long " * 500, CONTEXTS, count_words, n_ctx=600, max_tokens=200)
