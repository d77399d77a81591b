"""What the scoring memory saves on a batch of several models: the scoring step (cosine against
the reference and the reference-free scores) of every (question, model) pair, once with the
exact embedder and once with it remembering texts (shared.retrieval.embedding_memo), in one run,
on one core as a cpu worker scores. Writes benchmarks/results/scoring_memo.json.

No model is run: each question's contexts are its top chunks by BM25 (1000/150 chunks of the
set's PDFs), and the models' answers are stand-ins cut from the reference answer (all of it,
its first sentence, its last sentence), so that each model's answer differs as real ones do
while the contexts are the same for all, as they are in a batch.

    .venv/bin/python -m benchmarks.bench_scoring_memo [--questions 25] [--models 3]
"""

from __future__ import annotations

import argparse
import os
import time

from benchmarks import machine
from benchmarks.bench_baseline import read_questions
from benchmarks.bench_study import DOCS
from shared.pipeline import reference_free
from shared.pipeline.answering import similarity
from shared.retrieval.bm25 import BM25Okapi
from shared.retrieval.chunking import chunk_pages
from shared.retrieval.embedding_memo import Remembering
from shared.retrieval.embeddings import get_embedder
from shared.retrieval.indexes import tokenize
from shared.retrieval.pdf import extract_pages

TOP_K = 4


def contexts_per_question(docs: str, questions: list[dict]) -> list[list[str]]:
    chunks = [c for pdf in sorted(DOCS[docs].glob("*.pdf"))
              for c in chunk_pages(pdf.name, extract_pages(pdf.read_bytes(), pdf.name), 1000, 150)]
    bm25 = BM25Okapi([tokenize(c.text) for c in chunks])
    found = []
    for q in questions:
        scores = bm25.get_scores(tokenize(q["question"]))
        found.append([chunks[i].text for i in scores.argsort()[::-1][:TOP_K]])
    return found


def stand_in_answers(reference: str, models: int) -> list[str]:
    sentences = reference_free.sentences(reference.split("[")[0]) or [reference]
    return [" ".join(sentences), sentences[0], sentences[-1] + " " + sentences[0]][:models]


def score_all(embedder, questions: list[dict], contexts: list[list[str]], models: int) -> float:
    """Seconds to score every (question, model) pair, model by model as a batch's scores come."""
    started = time.perf_counter()
    for q, given in zip(questions, contexts):
        for answer in stand_in_answers(q["reference"], models):
            similarity(embedder, answer, q["reference"])
            reference_free.scores(embedder, q["question"], answer, given)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", default="northwind,galaxy-s10")
    parser.add_argument("--questions", type=int, default=25)
    parser.add_argument("--models", type=int, default=3, choices=(1, 2, 3))
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = "1"  # one core, as a cpu worker scores
    embedder = get_embedder()
    sets = {}
    for docs in args.docs.split(","):
        questions = read_questions(DOCS[docs], args.questions)
        contexts = contexts_per_question(docs, questions)
        pairs = len(questions) * args.models
        score_all(embedder, questions[:2], contexts[:2], 1)  # warm up
        # plain, remembering, plain again: the machine's drift shows between the two plain runs
        plain = score_all(embedder, questions, contexts, args.models)
        memo = Remembering(embedder)
        remembering = score_all(memo, questions, contexts, args.models)
        plain_again = score_all(embedder, questions, contexts, args.models)
        sets[docs] = {
            "pairs": pairs,
            "plain_s_per_answer": plain / pairs,
            "plain_again_s_per_answer": plain_again / pairs,
            "remembering_s_per_answer": remembering / pairs,
            "ratio": remembering / ((plain + plain_again) / 2),
            "texts_embedded": memo.misses, "texts_remembered": memo.hits,
        }
        print(docs, sets[docs], flush=True)
    machine.write("scoring_memo", {
        "models": args.models, "questions": args.questions, "top_k": TOP_K, "sets": sets,
        "notes": "ratio: seconds with the memory / without (mean of the runs before and after); "
                 "< 1: the memory saves time",
        "command": ".venv/bin/python -m benchmarks.bench_scoring_memo "
                   f"--docs {args.docs} --questions {args.questions} --models {args.models}"})


if __name__ == "__main__":
    main()
