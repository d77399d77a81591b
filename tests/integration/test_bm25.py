"""Our sparse BM25 gives rank_bm25's scores on the real Northwind chunks."""

import numpy as np
import pytest
from rank_bm25 import BM25Okapi as Reference

from shared.pipeline.questions import read_questions
from shared.retrieval.bm25 import BM25Okapi
from shared.retrieval.chunking import chunk_pages
from shared.retrieval.indexes import tokenize
from shared.retrieval.pdf import extract_pages
from tests.pdf_samples import NORTHWIND, STANDARD_PDF

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def corpus():
    pages = extract_pages(STANDARD_PDF.read_bytes(), STANDARD_PDF.name)
    return [tokenize(c.text) for c in chunk_pages(STANDARD_PDF.name, pages, 1000, 150)]


def test_scores_and_rankings_equal_rank_bm25(corpus):
    ours, reference = BM25Okapi(corpus), Reference(corpus)
    queries = [tokenize(q.question) for q in read_questions(NORTHWIND / "ground_truth.jsonl")]
    queries.append(["balance", "balance", "billing", "unknownword"])  # repeats and unknowns
    for query in queries:
        expected = reference.get_scores(query)
        got = ours.get_scores(query)
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)
        top = np.argsort(-expected, kind="stable")[:10]
        assert list(np.argsort(-got, kind="stable")[:10]) == list(top)


def test_empty_query_and_empty_corpus():
    assert BM25Okapi([["a"]]).get_scores([]).tolist() == [0.0]
    assert BM25Okapi([[]]).get_scores(["a"]).tolist() == [0.0]
