"""Checks besides cosine, given per question in the questions file: `contains` (every string
appears in the answer), `regex` (the pattern is found in the answer) and `exact` (the answer is
this text). Pure functions: the questions file validates them, scoring runs them.

Comparisons ignore case and runs of whitespace; `exact` also ignores trailing punctuation
("Yes." equals "yes"). A regex is searched as written (add `(?i)` to ignore case)."""

from __future__ import annotations

import re

CHECKS = ("contains", "regex", "exact")
TRAILING = ".,;:!?…"  # what `exact` ignores at the end of either text


def normalise(text: str) -> str:
    """Case-folded, whitespace runs made one space, trimmed."""
    return " ".join(text.casefold().split())


def normalise_exact(text: str) -> str:
    return normalise(text).rstrip(TRAILING + " ")


def given(question: dict) -> dict:
    """The checks a question record asks for (stored records without any: none)."""
    return {name: question[name] for name in CHECKS if question.get(name) not in (None, "", [])}


def run(question: dict, answer: str | None) -> dict[str, bool] | None:
    """Each given check's outcome on the answer; None when the question has no checks."""
    wanted = given(question)
    if not wanted:
        return None
    text = answer or ""
    outcome: dict[str, bool] = {}
    if "contains" in wanted:
        needles = wanted["contains"]
        needles = [needles] if isinstance(needles, str) else needles
        found = normalise(text)
        outcome["contains"] = all(normalise(n) in found for n in needles)
    if "regex" in wanted:
        outcome["regex"] = re.search(wanted["regex"], text) is not None
    if "exact" in wanted:
        outcome["exact"] = normalise_exact(text) == normalise_exact(wanted["exact"])
    return outcome


def result_fields(question: dict, answer: str | None) -> dict:
    """What a scored answer stores: `checks` (name -> passed) and `checks_passed` (all of them
    passed), both None for a question without checks."""
    outcome = run(question, answer)
    return {"checks": outcome, "checks_passed": None if outcome is None else all(outcome.values())}
