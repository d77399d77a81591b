"""Result files open safely in a spreadsheet."""

import csv
import io

import pytest

from shared.report import exports
from shared.report.exports import to_csv, to_seed

pytestmark = pytest.mark.unit


def result(**fields) -> dict:
    row = {"question_id": "q1", "model": "small", "question": "What?", "reference": None,
           "answer": "Yes.", "cosine": 0.5, "response_s": 1.25, "pages": [], "error": None,
           "cancelled": False}
    return {**row, **fields}


def test_csv_neutralises_formulas_and_keeps_numbers():
    rows = [result(question="=HYPERLINK(\"http://x\")", answer="+1+1", reference="-2",
                   error="@SUM(A1)", worker="\tcmd", cosine=-0.5, prompt_tokens=12)]
    (row,) = csv.DictReader(io.StringIO(to_csv({"results": rows})))
    assert row["question"] == "'=HYPERLINK(\"http://x\")"
    assert (row["answer"], row["reference"], row["error"], row["worker"]) == \
        ("'+1+1", "'-2", "'@SUM(A1)", "'\tcmd")
    assert (row["cosine"], row["prompt_tokens"], row["model"]) == ("-0.5", "12", "small")


def test_seed_rows_neutralise_formulas_and_keep_numbers():
    text = to_seed({"results": [result(question="-1+cmd|' /C calc'!A0", cosine=-0.25)]})
    assert text.splitlines()[1] == "small;'-1+cmd|' /C calc'!A0;-0.2500;1.250"


def test_checks_in_the_summary_and_the_csv():
    from shared.report.exports import SUMMARY_HEADERS, summary_rows

    def summary(model, rate, checked):
        return {"model": model, "answered": 4, "failed": 0, "cosine_mean": 0.5,
                "cosine_ci95": None, "cosine_median": 0.5, "checks_pass_rate": rate,
                "checked": checked, "latency_p50_s": 1.0, "latency_p95_s": 2.0,
                "ttft_p50_s": 0.1, "tokens_per_s": 10.0, "speedup_vs_slowest": 1.0}

    rows = summary_rows({"summary": [summary("a", 0.75, 4), summary("b", None, 0)]})
    column = SUMMARY_HEADERS.index("CHECKS")
    assert len(rows[0]) == len(SUMMARY_HEADERS)
    assert (rows[0][column], rows[1][column]) == ("0.75 (3/4)", "-")
    checked = result(checks={"contains": True, "regex": False}, checks_passed=False)
    first, second = csv.DictReader(io.StringIO(to_csv({"results": [checked, result()]})))
    assert (first["checks"], first["checks_passed"]) == ("contains:pass regex:fail", "False")
    assert (second["checks"], second["checks_passed"]) == ("", "")


def test_contexts_said_names_each_models_count_or_the_one_top_k():
    assert exports.contexts_said({"top_k": 3}) == "top-k 3"
    assert exports.contexts_said({"top_k": 4, "contexts_per_model": {"a": 2, "b": 4}}) == (
        "contexts per question a 2, b 4")


def test_prompts_said_names_the_batch_template_and_each_models_own():
    assert exports.prompts_said({"prompt": {"name": "sentences"}}) == "prompt sentences"
    assert exports.prompts_said({"prompt": {"name": "sentences"},
                                 "prompts_per_model": {"gemma3-270m": {"name": "study"}}}) == (
        "prompt sentences (gemma3-270m: study)")
