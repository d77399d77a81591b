"""Scores of an answer that need no reference answer, stored beside cosine for every answer:

- groundedness: the share of the answer's sentences supported by the contexts it was given. A
  sentence is supported when some sentence of the contexts is close to it in embedding space
  (cosine at least SUPPORTED, calibrated: benchmarks/bench_reference_free.py), every number in
  it appears in the contexts, and it does not negate what that closest sentence affirms (or
  the other way round): embeddings alone score "X is covered" and "X is not covered" alike.
- answer relevance: the cosine of the question and the answer.
- context relevance: the share of the contexts that bear on the question (cosine of question
  and context at least RELEVANT, calibrated the same way).

The embedder is the one cosine uses (exact fp32), so the scores compare across batches."""

from __future__ import annotations

import re

import numpy as np

# Calibrated on the human reference answers of Northwind and the Galaxy S10 manual against the
# chunks of their cited page and of another page (benchmarks/results/reference_free.json).
SUPPORTED = 0.68
RELEVANT = 0.37

SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])|\n+")
NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
NEGATION = re.compile(r"\b(not|no|never|none|cannot|without)\b|n't\b", re.IGNORECASE)
MIN_SENTENCE_CHARS = 12


def sentences(text: str) -> list[str]:
    """The text's sentences; fragments too short to state anything (bullets, numbers) join
    the sentence before them."""
    found: list[str] = []
    for part in SENTENCE_END.split(text or ""):
        part = " ".join(part.split())
        if not part:
            continue
        if found and len(part) < MIN_SENTENCE_CHARS:
            found[-1] += " " + part
        else:
            found.append(part)
    return found


def negated(text: str) -> bool:
    return bool(NEGATION.search(text))


def sentence_supported(sentence: str, matches: list[tuple[str, float]],
                       context_text: str) -> bool:
    """Some sentence of the contexts is close to it (cosine at least SUPPORTED) and says it
    with the same polarity (both negated or neither), and its numbers are in the contexts.
    matches: the contexts' sentences with their cosine to this one."""
    if not all(n in context_text for n in NUMBER.findall(sentence)):
        return False
    polarity = negated(sentence)
    return any(similarity >= SUPPORTED and negated(piece) == polarity
               for piece, similarity in matches)


def scores(embedder, question: str, answer: str, contexts: list[str]) -> dict:
    """groundedness, answer_relevance and context_relevance of one answer (None where there
    is nothing to score: an empty answer, no contexts)."""
    claims = sentences(answer)
    pieces = [s for c in contexts for s in sentences(c)]
    texts = [question, answer or "", *contexts, *claims, *pieces]
    vectors = embedder.embed(texts)
    q, a = vectors[0], vectors[1]
    ctx = vectors[2:2 + len(contexts)]
    claim_vectors = vectors[2 + len(contexts):2 + len(contexts) + len(claims)]
    piece_vectors = vectors[2 + len(contexts) + len(claims):]
    result = {"groundedness": None, "answer_relevance": None, "context_relevance": None}
    if contexts:
        result["context_relevance"] = float(np.mean(ctx @ q >= RELEVANT))
    if claims:
        result["answer_relevance"] = float(np.dot(q, a))
    if claims and pieces:
        similarity = claim_vectors @ piece_vectors.T
        joined = " ".join(contexts)
        supported = [sentence_supported(claim, list(zip(pieces, map(float, row))), joined)
                     for claim, row in zip(claims, similarity)]
        result["groundedness"] = sum(supported) / len(supported)
    return result
