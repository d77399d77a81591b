"""The LLM judge's prompt and how its reply becomes a grade (shared.pipeline.judging)."""

import pytest

from shared.llm.catalog import ModelSettings
from shared.pipeline import judging
from shared.report.exports import SUMMARY_HEADERS, judge_text, summary_rows
from shared.report.stats import summarize

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("reply, grade", [
    ("4", 4), (" 5\n", 5), ("Grade: 3/5", 3), ("I would give it a 2.", 2), ("4.5", 4),
    ("10/10", None), ("0", None), ("7 out of 10", None), ("", None), ("excellent", None),
    ("Score 12, so 3", 3),
])
def test_the_grade_is_the_first_standalone_digit_1_to_5(reply, grade):
    assert judging.parse_grade(reply) == grade


def test_the_prompt_holds_question_reference_and_answer_and_asks_for_one_digit():
    system, user = judging.grading_messages("What is the deductible?", "$2,000.",
                                            "It is\n  $2,000 a year.")
    assert system.role == "system" and "single digit from 1 to 5" in system.content
    assert user.role == "user"
    assert "Question: What is the deductible?" in user.content
    assert "Reference answer: $2,000." in user.content
    assert "Candidate answer: It is $2,000 a year." in user.content  # whitespace folded
    assert user.content.rstrip().endswith("Grade:")
    _, cut = judging.grading_messages("Q?", "r" * 50, "a" * 50, limit=10)
    assert "Reference answer: rrrrrrrrrr ..." in cut.content and "a" * 11 not in cut.content


class Counting:
    """An engine that counts a word as a token, with a small context window."""

    def __init__(self, n_ctx: int):
        self.model = ModelSettings(name="judge", file="judge.gguf", n_ctx=n_ctx, max_tokens=64)

    def count_tokens(self, messages) -> int:
        return sum(len(m.content.split()) for m in messages)


def test_a_long_answer_is_cut_until_the_prompt_fits_else_the_judgement_fails():
    long = " ".join(["word"] * 3000)
    messages = judging.fit_messages(Counting(n_ctx=400), "Q?", "Ref.", long)
    assert Counting(400).count_tokens(messages) + judging.MAX_TOKENS <= 400
    # the longest cut that fits: 1000 characters (2000 would not)
    assert messages[1].content.count("word") == 1000 // len("word ")
    with pytest.raises(judging.JudgeFailed, match="does not fit judge's n_ctx of 60"):
        judging.fit_messages(Counting(n_ctx=60), "Q?", "Ref.", long)


def test_summary_shows_each_judges_mean_labelled_with_the_judge():
    def row(qid, grades):
        return {"model": "a", "question_id": qid, "cosine": 0.5, "response_s": 1.0,
                "ttft_s": 0.1, "generation_s": 0.9, "completion_tokens": 5, "error": None,
                "judgements": {j: {"grade": g} for j, g in grades.items()}}

    results = [row("q1", {"big": 4, "small": 1}), row("q2", {"big": 5, "small": None}),
               row("q3", {})]
    (summary,) = summarize(results, ["a"])["summary"]
    assert summary["judges"] == [
        {"judge_model": "big", "judge_mean": 4.5, "judged": 2, "failed": 0},
        {"judge_model": "small", "judge_mean": 1.0, "judged": 1, "failed": 1}]
    (cells,) = summary_rows({"summary": [{**summary, "speedup_vs_slowest": 1.0}]})
    assert cells[SUMMARY_HEADERS.index("JUDGE")] == "4.50 by big; 1.00 by small"
    assert judge_text(results[1]["judgements"]) == "big:5 small:-"
    (plain,) = summarize([row("q1", {})], ["a"])["summary"]
    assert plain["judges"] == []
