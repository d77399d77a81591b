import pytest

from shared.config import Settings
from shared.errors import UsageError
from shared.retrieval.prompts import (
    BUILT_IN,
    DEFAULT_PROMPT,
    PromptTemplate,
    QuestionTooLong,
    fit_prompt,
    get_prompt,
    load_prompts,
    messages_for,
)

pytestmark = pytest.mark.unit

CONTEXTS = [{"document": "plan.pdf", "page": p, "text": f"page{p} " + "word " * 100}
            for p in (7, 3, 9)]


def count_words(messages):
    """A stand-in tokenizer for pure logic: one token per word."""
    return sum(len(m.content.split()) for m in messages)


def test_ragfleet_system_text_is_fixed_and_first():
    ragfleet = BUILT_IN["ragfleet"]
    a, b = messages_for("Q1?", CONTEXTS, ragfleet), messages_for("Q2?", CONTEXTS[:1], ragfleet)
    assert a[0].role == b[0].role == "system" and a[0].content == b[0].content
    assert a[0].content == ragfleet.system
    assert a[1].content.startswith("Context:\npage7 ") and a[1].content.endswith("Question: Q1?")
    assert messages_for("Q?", [], ragfleet)[1].content == "Question: Q?"


def test_the_default_asks_for_at_most_three_sentences_after_the_question():
    assert messages_for("Q?", CONTEXTS) == messages_for("Q?", CONTEXTS, BUILT_IN["sentences"])
    system, user = messages_for("What is covered?", CONTEXTS[:2])
    assert system.content.startswith("Answer the question using only this context:\npage7 ")
    assert system.content.endswith("If the context does not contain the answer, say so.")
    assert user.content == "What is covered?\nAnswer in at most three sentences."
    assert Settings().prompt == DEFAULT_PROMPT == "sentences"


def test_study_prompt_is_the_studys_own():
    system, user = messages_for("What is covered?", CONTEXTS[:2], BUILT_IN["study"])
    assert system.content.startswith(
        "You are a friendly chatbot who always responds in a precise manner. If answer is "
        "unknown to you, you will politely say so.\nUse the following context to answer the "
        "question below:\npage7 ")
    assert system.content.endswith("\n\npage3 " + "word " * 100)
    assert user.content == "What is covered?"
    assert BUILT_IN["study"].label == "study@v1"


def test_everything_kept_when_it_fits():
    fitted = fit_prompt("Q?", CONTEXTS, count_words, n_ctx=2048, max_tokens=512)
    assert fitted.contexts_kept == 3 and fitted.max_tokens == 512
    assert fitted.prompt_tokens == count_words(messages_for("Q?", CONTEXTS))


def test_lowest_ranked_contexts_are_dropped_first():
    full = count_words(messages_for("Q?", CONTEXTS))
    fitted = fit_prompt("Q?", CONTEXTS, count_words, n_ctx=full - 50 + 100, max_tokens=100)
    assert fitted.contexts_kept == 2 and fitted.prompt_tokens <= full - 50
    prompt = " ".join(m.content for m in fitted.messages)
    assert "page7" in prompt and "page3" in prompt and "page9" not in prompt


def test_a_large_max_tokens_keeps_the_contexts_and_is_capped_by_the_room_left():
    """The study's max_tokens 2000 at n_ctx 2048: contexts stay while the answer keeps its
    minimum room; the cap is what is left."""
    full = count_words(messages_for("Q?", CONTEXTS))
    fitted = fit_prompt("Q?", CONTEXTS, count_words, n_ctx=2048, max_tokens=2000,
                        min_answer_tokens=256)
    assert fitted.contexts_kept == 3
    assert fitted.max_tokens == 2048 - full
    tight = fit_prompt("Q?", CONTEXTS, count_words, n_ctx=full + 100, max_tokens=2000,
                       min_answer_tokens=256)
    assert tight.contexts_kept == 1 and tight.max_tokens >= 256
    assert tight.prompt_tokens + tight.max_tokens == full + 100


def test_question_that_cannot_fit_is_an_error():
    with pytest.raises(QuestionTooLong):
        fit_prompt("long " * 500, CONTEXTS, count_words, n_ctx=600, max_tokens=200)


def test_user_templates_layer_over_the_built_in_ones(tmp_path):
    path = tmp_path / "prompts.toml"
    path.write_text('[prompts.terse]\nversion = 2\nsystem = "Answer from: {context}"\n'
                    'separator = "\\n---\\n"\n', encoding="utf-8")
    templates = load_prompts(path)
    assert set(templates) == {"ragfleet", "study", "sentences", "terse"}
    system, user = templates["terse"].messages("Q?", CONTEXTS[:2])
    assert system.content.count("\n---\n") == 1 and user.content == "Q?"
    assert get_prompt("terse", path).label == "terse@v2"
    with pytest.raises(UsageError, match="unknown prompt 'nope'"):
        get_prompt("nope", path)


def test_best_last_puts_the_best_context_nearest_the_question():
    best_last = PromptTemplate(name="near", system="{context}", context_order="best_last")
    system, _ = best_last.messages("Q?", CONTEXTS)
    assert [line.split()[0] for line in system.content.split("\n\n")] == ["page9", "page3",
                                                                          "page7"]
    fitted = fit_prompt("Q?", CONTEXTS, count_words, n_ctx=count_words(
        best_last.messages("Q?", CONTEXTS)) - 50 + 100, max_tokens=100, template=best_last)
    assert fitted.contexts_kept == 2  # the lowest-ranked still goes first
    assert fitted.messages[0].content.startswith("page3") and "page9" not in \
        fitted.messages[0].content


@pytest.mark.parametrize("fields, message", [
    ({"system": "Use {contexts}"}, "only {context} and {question}"),
    ({"system": "Use {context}", "user": "Answer."}, "never shows the {question}"),
    ({"system": "{context}", "context_order": "random"}, "best_first"),
])
def test_bad_templates_are_refused(fields, message):
    with pytest.raises(ValueError, match=message.replace("{", r"\{").replace("}", r"\}")):
        PromptTemplate(name="bad", **fields)
