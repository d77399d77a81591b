"""Result files open safely in a spreadsheet."""

import csv
import io

import pytest

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
