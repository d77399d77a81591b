"""Question generation's pure parts: which passages are sampled, how a reply is read, and which
items the filters drop and why (hand-made bad items, each with its one reason)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from shared.pipeline import question_filters, question_generation
from shared.pipeline.question_generation import parse_item, sample_passages
from shared.retrieval.chunking import Chunk

pytestmark = pytest.mark.unit

FILLER = "The plan covers services described in this section in some detail. " * 6


def collection(pages_per_doc: dict[str, int], chunks_per_page: int = 2) -> list[Chunk]:
    return [Chunk(doc, page, f"{doc} page {page} part {part}. {FILLER}")
            for doc, pages in pages_per_doc.items() for page in range(1, pages + 1)
            for part in range(chunks_per_page)]


def test_passages_spread_over_documents_and_pages_reproducibly():
    chunks = collection({"big.pdf": 100, "small.pdf": 20})
    picked = sample_passages(chunks, 30, seed=7)
    assert len(picked) == 48  # 30 x 1.6: the filters drop some
    assert picked == sample_passages(chunks, 30, seed=7)
    assert picked != sample_passages(chunks, 30, seed=8)
    by_doc = Counter(p["document"] for p in picked)
    assert by_doc["big.pdf"] > by_doc["small.pdf"] > 0  # in proportion to the pages
    big_pages = sorted(p["page"] for p in picked if p["document"] == "big.pdf")
    # one page from each equal slice: the whole document, not its first pages
    assert big_pages[0] <= 10 and big_pages[-1] >= 90
    assert len(set(big_pages)) == len(big_pages)
    assert all(chunks[p["chunk"]].text == p["text"] for p in picked)


def test_short_chunks_are_left_out_while_longer_ones_exist():
    chunks = collection({"a.pdf": 10}) + [Chunk("a.pdf", 11, "Page 11")]
    assert all(p["page"] != 11 for p in sample_passages(chunks, 20, seed=0))
    assert sample_passages(chunks, 100, seed=0)  # asking for more than there is: all there is
    assert len(sample_passages(chunks, 100, seed=0)) == 20


@pytest.mark.parametrize("reply, expected", [
    ("Question: What is covered?\nAnswer: Eye exams are covered.",
     ("What is covered?", "Eye exams are covered.")),
    ("**Question:** What is covered?\n\n**Answer:** Eye exams.",
     ("What is covered?", "Eye exams.")),
    ("Sure! question: How long?\nanswer:  Two\n weeks.", ("How long?", "Two weeks.")),
    ("What is covered? Eye exams.", None),
    ("Question: What is covered?\nAnswer:", None),
    ("", None),
])
def test_a_reply_is_read_only_in_the_asked_form(reply, expected):
    assert parse_item(reply) == expected


PASSAGE = ("Northwind Standard covers routine eye exams once every 12 months at in-network "
           "providers. Contact lenses and eyeglasses are not covered by the plan, but members "
           "can buy them at a discount of 20 percent through the vision partner.")


def item(index, question, answer, **extra):
    return {"index": index, "model": "m", "prompt": "generate@v1", "question": question,
            "answer": answer, "finish_reason": "stop",
            "passage": {"document": "plan.pdf", "page": 3, "chunk": index}, **extra}


BAD = {
    "failed": {"index": 0, "error": "generation exceeded the time limit of 600 s"},
    "unparsed": {"index": 0, "raw": "Eye exams are nice.", "finish_reason": "stop"},
    "truncated": item(0, "How often are eye exams covered?", "Eye exams are covered once every",
                      finish_reason="length"),
    "too short": item(0, "Eye exams?", "Yearly."),
    "refers to the passage": item(0, "According to the passage, how often are eye exams "
                                     "covered?", "Once every 12 months."),
    "refers to the passage in its answer": item(
        0, "How often are eye exams covered by Northwind Standard?",
        "The passage states that eye exams are covered once every 12 months."),
    "refers to this document": item(0, "What is the purpose of this document?",
                                    "It explains how often eye exams are covered."),
    "copies the passage": item(0, "Northwind Standard covers routine eye exams once every 12 "
                                  "months at in-network providers?", "Yes, it does."),
    "answer not in the passage": item(0, "How often does the plan cover eye exams?",
                                      "Twice a year, with glasses included for free."),
}


@pytest.mark.parametrize("reason", sorted(BAD))
def test_each_bad_item_is_dropped_for_its_reason(reason):
    kept, dropped = question_filters.filter_items([BAD[reason]], [{"text": PASSAGE}])
    expected = "refers to the passage" if reason.startswith("refers to") else reason
    assert kept == [] and dropped == Counter({expected: 1})


def test_a_supported_item_is_kept_and_a_near_duplicate_is_not():
    good = item(0, "How often does Northwind Standard pay for an eye exam?",
                "Routine eye exams are covered once every 12 months at in-network providers.")
    again = item(1, "How often does Northwind Standard pay for eye exams?",
                 "Once every 12 months, at in-network providers.")
    other = item(2, "Are contact lenses covered by the plan?",
                 "No, contact lenses are not covered, but members get a 20 percent discount.")
    wrong_number = item(3, "What discount do members get on eyeglasses?",
                        "Members get a discount of 25 percent through the vision partner.")
    kept, dropped = question_filters.filter_items([other, again, good, wrong_number],
                                                  [{"text": PASSAGE}] * 4)
    assert [k["index"] for k in kept] == [0, 2]  # passage order; the later duplicate goes
    assert dropped == Counter({"duplicate": 1, "answer not in the passage": 1})


def test_the_questions_file_cites_each_items_page_and_says_what_made_it():
    from shared.pipeline.questions import read_questions

    job = {"collection": "nw", "version": 2, "seed": 5}
    kept = [item(4, "How often does the plan cover eye exams?", "Once every 12 months.")]
    text = question_generation.questions_file("g-1", job, kept)
    row = json.loads(text)
    assert row["generated_by"] == {"model": "m", "prompt": "generate@v1", "job": "g-1",
                                   "passage": {"document": "plan.pdf", "page": 3, "chunk": 4},
                                   "collection": "nw", "version": 2, "seed": 5}
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "q.jsonl"
        path.write_text(text)
        (question,) = read_questions(path)  # an ordinary questions file for `ask`
    assert question.sources == ("plan.pdf#page=3",)
    assert question.reference == "Once every 12 months."
