"""Checks besides cosine (contains, regex, exact) on one answer."""

import pytest

from shared.pipeline import checks

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("question, answer, expected", [
    ({"contains": ["Two Thousand", "dollars"]}, "It is two\n thousand   DOLLARS a year.",
     {"contains": True}),
    ({"contains": ["two thousand", "euros"]}, "Two thousand dollars.", {"contains": False}),
    ({"contains": "2,000"}, "The deductible is $2,000.", {"contains": True}),
    ({"regex": r"\$\s?2,?000"}, "The deductible is $ 2000 per person.", {"regex": True}),
    ({"regex": "Yes"}, "yes, it is", {"regex": False}),  # as written: case counts
    ({"regex": "(?i)Yes"}, "yes, it is", {"regex": True}),
    ({"exact": "Yes"}, "  yes. ", {"exact": True}),
    ({"exact": "The plan  covers it"}, "the plan covers it!?", {"exact": True}),
    ({"exact": "Yes"}, "Yes, it is.", {"exact": False}),
    ({"exact": "no"}, None, {"exact": False}),  # no answer text passes nothing
    ({"contains": ["a"], "regex": "b", "exact": "a"}, "A", {"contains": True, "regex": False,
                                                            "exact": True}),
])
def test_each_given_check_runs_on_the_answer(question, answer, expected):
    assert checks.run(question, answer) == expected


def test_a_question_without_checks_has_none_and_all_must_pass():
    # stored records from before checks, and empty values, mean no check
    assert checks.run({"id": "q", "question": "?"}, "x") is None
    assert checks.result_fields({"contains": [], "regex": None, "exact": ""}, "x") == \
        {"checks": None, "checks_passed": None}
    assert checks.result_fields({"contains": ["x"], "exact": "x"}, "X.") == \
        {"checks": {"contains": True, "exact": True}, "checks_passed": True}
    assert checks.result_fields({"contains": ["x"], "exact": "y"}, "X.")["checks_passed"] is False


def test_normalisation():
    assert checks.normalise("  A\tB\n\nc ") == "a b c"
    assert checks.normalise_exact("Yes. ...!") == "yes"
    assert checks.normalise("Straße") == checks.normalise("STRASSE")  # casefold, not lower
