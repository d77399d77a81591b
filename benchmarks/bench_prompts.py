"""Answers that end when they are complete: which prompt wording gives the best mean cosine in
the fewest new tokens, on every document set named (Northwind and the Galaxy S10 manual by
default, their 50 questions written by people), and how many answers each leaves cut.

Each variant is a prompt template (written to the fleet's prompts.toml) asked with the same
model, retrieval and max_tokens as the others, one batch at a time on one fleet per document
set. Per variant: mean cosine with its interval, the paired difference from the study's prompt,
mean new tokens, answers cut at max_tokens, answers ending mid-sentence, seconds per question,
and what trimming each cut answer back to its last complete sentence does to its cosine.
How many answers a lower cap would cut comes from the same run (sampling is seeded and near greedy, so
an answer under a lower cap is this answer's first tokens). `--top-ks 1,2,4,6` runs every variant
at each number of contexts: the context budget, tokens of context against cosine.
Writes benchmarks/results/prompts.json (or --out NAME).

    python -m benchmarks.bench_prompts [--docs northwind,galaxy-s10] [--questions 50]
        [--model smollm2-135m] [--max-tokens 256] [--variants study,best_last,concise,brief,sentences]
        [--top-ks 4] [--out prompts]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks import machine
from benchmarks.bench_overhead import PROJECT_ROOT, fleet_env, ragfleet
from benchmarks.bench_study import DOCS, questions_file
from broker import connection
from shared.config import Settings
from shared.pipeline.answer_ending import trim_to_last_sentence
from shared.pipeline.answering import similarity
from shared.pipeline.questions import split_citations
from shared.report.stats import bootstrap_ci
from shared.retrieval import prompts
from shared.retrieval.embeddings import get_embedder
from shared.state import batch_store

STUDY_SYSTEM = prompts.BUILT_IN["study"].system  # the built-in, not a copy that could drift
# Candidates: the study's prompt with its best context nearest the question; with a length
# instruction in the system turn, or after the question (small models heed the last thing they
# read); a plain instruction of our own.
VARIANTS = {
    "best_last": {"system": STUDY_SYSTEM, "context_order": "best_last"},
    "concise": {"system": STUDY_SYSTEM + "\nAnswer concisely, in complete sentences."},
    "brief": {"system": STUDY_SYSTEM,
              "user": "{question}\nAnswer in one to three complete sentences."},
    "sentences": {"system": "Answer the question using only this context:\n{context}\n"
                            "If the context does not contain the answer, say so.",
                  "user": "{question}\nAnswer in at most three sentences."},
}
SENTENCE_END = (".", "!", "?", ")", '"', "'")
LOWER_CAPS = (64, 96, 128, 192)  # max_tokens values whose cut counts are read off one run


def prompts_toml(names: list[str]) -> str:
    lines = []
    for name in names:
        if name not in VARIANTS:
            continue  # a built-in template
        lines.append(f"[prompts.{name}]")
        # a JSON string is a valid TOML basic string: newlines and quotes escaped
        lines += [f"{field} = {json.dumps(text)}" for field, text in VARIANTS[name].items()]
    return "\n".join(lines) + "\n"


def variant_figures(env: dict, client, batch_id: str, wall_s: float, embedder) -> dict:
    report = json.loads(ragfleet(env, "results", batch_id, "--format", "json"))
    row = report["summary"][0]
    results = batch_store.results(client, batch_id)
    cut = [r for r in results if r.get("finish_reason") == "length"]
    trimmed = []
    for r in cut:
        reference, _ = split_citations(r["reference"])
        # the answer as generated (a trimmed one with its dropped tail back) against the
        # fleet's trimming of it, so runs with and without --keep-cut-endings compare
        whole = r["answer"] + r.get("cut_tail", "")
        trimmed.append(similarity(embedder, trim_to_last_sentence(whole)[0], reference)
                       - similarity(embedder, whole, reference))
    return {"batch": batch_id, "cosine_mean": row["cosine_mean"],
            "cosine_ci95": row["cosine_ci95"],
            "completion_tokens_mean": row["completion_tokens_mean"],
            "prompt_tokens_mean": row["prompt_tokens_mean"], "cut": len(cut),
            "cut_at": {cap: sum(r.get("completion_tokens", 0) >= cap for r in results)
                       for cap in LOWER_CAPS},
            "mid_sentence": sum(not (r.get("answer") or "").rstrip().endswith(SENTENCE_END)
                                for r in results),
            "seconds_per_question": wall_s / len(results),
            "latency_p50_s": row["latency_p50_s"],
            "trimmed_cut_cosine_change_mean": sum(trimmed) / len(trimmed) if trimmed else None,
            "cosines": {r["question_id"]: r["cosine"] for r in results}}


def paired(base: dict, other: dict) -> dict:
    diffs = [other["cosines"][q] - c for q, c in base["cosines"].items()
             if q in other["cosines"]]
    return {"diff_mean": sum(diffs) / len(diffs), "ci95": bootstrap_ci(diffs)}


def one_set(docs: str, args, variants: list[str], top_ks: list[int], embedder) -> dict:
    data_dir = PROJECT_ROOT / ".ragfleet" / f"bench-prompts-{docs}"
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    (data_dir / "prompts.toml").write_text(prompts_toml(variants))
    env = fleet_env(data_dir)
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        questions = Path(tmp) / "questions.jsonl"
        questions_file(DOCS[docs], args.questions, questions)
        ragfleet(env, "up", "--model", args.model, "--threads", str(args.threads))
        try:
            ragfleet(env, "ingest", *map(str, sorted(DOCS[docs].glob("*.pdf"))), "-c", docs,
                     "--wait")
            _, client = connection.connect(Settings(data_dir=data_dir))
            for top_k in top_ks:
                for name in variants:
                    key = name if len(top_ks) == 1 else f"{name}/top{top_k}"
                    started = time.perf_counter()
                    batch = json.loads(ragfleet(env, "ask", str(questions), "-c", docs,
                                                "-m", args.model, "--prompt", name,
                                                "--max-tokens", str(args.max_tokens),
                                                "--top-k", str(top_k), "--wait",
                                                "--json"))["batch"]
                    runs[key] = variant_figures(env, client, batch,
                                                time.perf_counter() - started, embedder)
                    runs[key].update(prompt=name, top_k=top_k)
                    print(docs, key, {k: v for k, v in runs[key].items() if k != "cosines"},
                          flush=True)
        finally:
            ragfleet(env, "down")
    first = next(iter(runs))
    for key in list(runs)[1:]:
        runs[key]["vs_" + first] = paired(runs[first], runs[key])
    # per-question cosines stay: runs of different invocations can be paired later
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", default="northwind,galaxy-s10")
    parser.add_argument("--questions", type=int, default=50)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--variants", default="study," + ",".join(VARIANTS),
                        help="prompt names, the first the one the others are compared with")
    parser.add_argument("--top-ks", default="4", help="numbers of contexts, e.g. 1,2,4,6")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", default="prompts", help="benchmarks/results/OUT.json")
    args = parser.parse_args()
    variants = args.variants.split(",")
    top_ks = [int(k) for k in args.top_ks.split(",")]
    embedder = get_embedder()
    sets = {docs: one_set(docs, args, variants, top_ks, embedder)
            for docs in args.docs.split(",")}
    machine.write(args.out, {"model": args.model, "max_tokens": args.max_tokens,
                             "top_ks": top_ks, "questions": args.questions,
                             "variants": {n: VARIANTS.get(n, "built-in") for n in variants},
                             "sets": sets})


if __name__ == "__main__":
    main()
