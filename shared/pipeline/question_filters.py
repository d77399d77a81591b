"""Which generated items are kept: each dropped item has one reason, counted for the report.

In order: no item at all (the pool failed, or the reply was not in the asked form), cut by the
cap on new tokens, too short to be a question or an answer, a question or answer that speaks
of "the passage" or "this document" (no reader of the collection would), a question that
copies the passage, an answer whose words or numbers are not in its passage (not supported by
it), and a question that repeats or nearly repeats one kept before it. Lexical tests on
purpose: they are cheap, need no model, and a person can check why an item went."""

from __future__ import annotations

import re
from collections import Counter

from shared.retrieval.indexes import tokenize as words  # lower case, punctuation out

REASONS = ("failed", "unparsed", "truncated", "too short", "refers to the passage",
           "copies the passage", "answer not in the passage", "duplicate")
MIN_QUESTION_WORDS = 4
MIN_ANSWER_WORDS = 2
# a question sharing this many consecutive words with its passage copies it
COPIED_RUN = 8
# the share of the answer's content words that must appear in its passage
SUPPORT = 0.6
# questions sharing this share of their content words are the same question
DUPLICATE = 0.7
META = re.compile(r"\b((the|this|that|given|above|provided) (passage|text|excerpt|context)|"
                  r"(this|given|above|provided) document)\b", re.IGNORECASE)
NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
STOPWORDS = frozenset("""a an and are as at be been by can do does for from has have how i if in
into is it its may of on or that the their there these this to was what when where which who
why will with would you your about any all also more most not no other such than then they
under up what""".split())


def content_words(text: str) -> set[str]:
    return {w for w in words(text) if w not in STOPWORDS and len(w) > 2}


def longest_shared_run(a: list[str], b: list[str]) -> int:
    """The longest run of consecutive words a and b share."""
    best, previous = 0, [0] * (len(b) + 1)
    for x in a:
        current = [0] * (len(b) + 1)
        for j, y in enumerate(b, start=1):
            if x == y:
                current[j] = previous[j - 1] + 1
                best = max(best, current[j])
        previous = current
    return best


def supported(answer: str, passage: str) -> bool:
    """Most of the answer's content words, and every number in it, are in the passage."""
    said, source = content_words(answer), content_words(passage)
    numbers_ok = all(n in passage for n in NUMBER.findall(answer))
    return numbers_ok and (not said or len(said & source) / len(said) >= SUPPORT)


def same_question(a: set[str], b: set[str]) -> bool:
    return bool(a and b) and len(a & b) / len(a | b) >= DUPLICATE


def drop_reason(item: dict, passage: str) -> str | None:
    """Why this item is dropped, before duplicates are looked for; None to keep it."""
    if item.get("error"):
        return "failed"
    question, answer = item.get("question"), item.get("answer")
    if not question or not answer:
        return "unparsed"
    if item.get("finish_reason") == "length":
        return "truncated"
    if len(words(question)) < MIN_QUESTION_WORDS or len(words(answer)) < MIN_ANSWER_WORDS:
        return "too short"
    if META.search(question) or META.search(answer):
        return "refers to the passage"
    if longest_shared_run(words(question), words(passage)) >= COPIED_RUN:
        return "copies the passage"
    if not supported(answer, passage):
        return "answer not in the passage"
    return None


def filter_items(items: list[dict], passages: list[dict]) -> tuple[list[dict], Counter]:
    """The items kept, in passage order, and how many were dropped for each reason."""
    kept, dropped, seen = [], Counter(), []
    for item in sorted(items, key=lambda i: i["index"]):
        reason = drop_reason(item, passages[item["index"]]["text"])
        if reason is None:
            mine = content_words(item["question"])
            if any(same_question(mine, other) for other in seen):
                reason = "duplicate"
            else:
                seen.append(mine)
                kept.append(item)
        if reason:
            dropped[reason] += 1
    return kept, dropped
