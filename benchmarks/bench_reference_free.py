"""Calibrates the reference-free scores (shared.pipeline.reference_free) on answers whose
support is known: the human reference answers of each document set, against the chunks of the
page they cite (supported) and of another page of the same documents (not supported: same
domain, same vocabulary, the hard case).

- groundedness: per reference sentence, the best cosine to a sentence of the cited page's
  chunks against another page's; the threshold with the best balanced accuracy (Youden's J)
  over both sets, then each set's rates at it, and the full rule (numbers, negation) too.
- context relevance: the question against its cited page's best chunk, and another page's.
- answer relevance: the question against its reference, and another question's reference.

Writes benchmarks/results/reference_free.json.

    python -m benchmarks.bench_reference_free [--docs northwind,galaxy-s10] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import random

import numpy as np

from benchmarks import machine
from benchmarks.bench_study import DOCS
from shared.config import Settings
from shared.pipeline import reference_free
from shared.pipeline.questions import split_citations
from shared.retrieval.chunking import chunk_pages
from shared.retrieval.embeddings import get_embedder
from shared.retrieval.pdf import extract_pages


def load_set(folder) -> tuple[dict, list[dict]]:
    """(document, page) -> chunk texts; the questions with their reference and cited pages."""
    settings = Settings()
    pages = {}
    for pdf in sorted(folder.glob("*.pdf")):
        for chunk in chunk_pages(pdf.name, extract_pages(pdf.read_bytes(), pdf.name),
                                 settings.chunk_size, settings.chunk_overlap):
            pages.setdefault((chunk.document, chunk.page), []).append(chunk.text)
    rows = []
    for line in (folder / "ground_truth.jsonl").read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        reference, cited = split_citations(row.get("truth") or row.get("reference") or "")
        cited = [tuple(c.rsplit("#page=", 1)) for c in cited]
        cited = [(doc, int(page)) for doc, page in cited if (doc, int(page)) in pages]
        if cited:
            rows.append({"question": row["question"], "reference": reference, "cited": cited})
    return pages, rows


def best_similarity(embedder, texts: list[str], pool: list[str]) -> tuple[np.ndarray, list]:
    """Per text, the best cosine to a text of the pool, and every text of the pool with its
    cosine."""
    vectors = embedder.embed(texts + pool)
    similarity = vectors[:len(texts)] @ vectors[len(texts):].T
    return similarity.max(axis=1), [list(zip(pool, map(float, row))) for row in similarity]


def youden(positive: list[float], negative: list[float]) -> dict:
    """The threshold separating the two best (true positive rate minus false positive rate)."""
    candidates = sorted(set(np.round(positive + negative, 3)))
    best = max(candidates, key=lambda t: np.mean(np.array(positive) >= t)
               - np.mean(np.array(negative) >= t))
    return {"threshold": float(best), **rates(positive, negative, best)}


def rates(positive: list[float], negative: list[float], threshold: float) -> dict:
    tpr = float(np.mean(np.array(positive) >= threshold))
    fpr = float(np.mean(np.array(negative) >= threshold))
    return {"true_positive_rate": round(tpr, 3), "false_positive_rate": round(fpr, 3),
            "balanced_accuracy": round((tpr + 1 - fpr) / 2, 3)}


def auc(positive: list[float], negative: list[float]) -> float:
    """The chance that a positive scores above a negative (ties count half)."""
    p, n = np.array(positive)[:, None], np.array(negative)[None, :]
    return float(np.mean((p > n) + 0.5 * (p == n)))


def measure_set(embedder, name: str, seed: int) -> dict:
    pages, rows = load_set(DOCS[name])
    rng = random.Random(seed)
    keys = sorted(pages)
    found = {"questions": len(rows), "claims": {"supported": [], "unsupported": []},
             "rule": {"supported": [], "unsupported": []},
             "context": {"cited": [], "other": []}, "answer": {"own": [], "other": []}}
    references = [r["reference"] for r in rows]
    for i, row in enumerate(rows):
        cited_text = [t for key in row["cited"] for t in pages[key]]
        other_key = rng.choice([k for k in keys if k not in row["cited"]])
        other_text = pages[other_key]
        claims = reference_free.sentences(row["reference"])
        for label, chunk_texts in (("supported", cited_text), ("unsupported", other_text)):
            pieces = [s for c in chunk_texts for s in reference_free.sentences(c)]
            best, matches = best_similarity(embedder, claims, pieces)
            found["claims"][label] += [float(b) for b in best]
            joined = " ".join(chunk_texts)
            found["rule"][label] += [
                reference_free.sentence_supported(c, m, joined) for c, m in zip(claims, matches)]
        found["context"]["cited"].append(float(best_similarity(
            embedder, [row["question"]], cited_text)[0][0]))
        found["context"]["other"].append(float(best_similarity(
            embedder, [row["question"]], other_text)[0][0]))
        vectors = embedder.embed([row["question"], row["reference"],
                                  references[(i + 1 + rng.randrange(len(rows) - 1)) % len(rows)]])
        found["answer"]["own"].append(float(vectors[0] @ vectors[1]))
        found["answer"]["other"].append(float(vectors[0] @ vectors[2]))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", default="northwind,galaxy-s10")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    embedder = get_embedder()
    sets = {name: measure_set(embedder, name, args.seed) for name in args.docs.split(",")}
    pooled = {kind: {label: [v for s in sets.values() for v in s[kind][label]]
                     for label in sets[next(iter(sets))][kind]}
              for kind in ("claims", "context", "answer")}
    chosen = {"groundedness_sentence": youden(pooled["claims"]["supported"],
                                              pooled["claims"]["unsupported"]),
              "context_relevance": youden(pooled["context"]["cited"], pooled["context"]["other"])}
    figures = {"embedder": embedder.id, "seed": args.seed, "chosen": chosen,
               "current": {"SUPPORTED": reference_free.SUPPORTED,
                           "RELEVANT": reference_free.RELEVANT},
               "sets": {}}
    for name, found in sets.items():
        figures["sets"][name] = {
            "questions": found["questions"],
            "claims": len(found["claims"]["supported"]),
            "sentence_similarity_auc": round(auc(found["claims"]["supported"],
                                                 found["claims"]["unsupported"]), 3),
            "sentence_at_chosen": rates(found["claims"]["supported"],
                                        found["claims"]["unsupported"],
                                        chosen["groundedness_sentence"]["threshold"]),
            # the rule as shipped: threshold SUPPORTED, numbers and negation
            "rule_supported_rate": round(float(np.mean(found["rule"]["supported"])), 3),
            "rule_unsupported_rate": round(float(np.mean(found["rule"]["unsupported"])), 3),
            "context_auc": round(auc(found["context"]["cited"], found["context"]["other"]), 3),
            "context_at_chosen": rates(found["context"]["cited"], found["context"]["other"],
                                       chosen["context_relevance"]["threshold"]),
            "answer_relevance_auc": round(auc(found["answer"]["own"], found["answer"]["other"]),
                                          3),
            "answer_relevance_mean": {
                "own_reference": round(float(np.mean(found["answer"]["own"])), 3),
                "another_questions_reference": round(float(np.mean(found["answer"]["other"])),
                                                     3)},
        }
    print(json.dumps({"chosen": chosen, "sets": figures["sets"]}, indent=2))
    machine.write("reference_free", figures)


if __name__ == "__main__":
    main()
