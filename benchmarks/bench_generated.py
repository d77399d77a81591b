"""Can a generated question set stand in for an answer key? On each document set, the strongest
model installed offline writes a question set (`ragfleet questions generate`), every bundled
model answers it and the set's 50 questions written by people, and the two verdicts are put
side by side: each model's mean score with its interval, the order of the models (the paired
difference with its interval) and the retrieval hit rate at 4 (generated questions cite the
page they were written from). Writes benchmarks/results/generated_sets.json; the generated
files stay in the fleet's data directory, .ragfleet/bench-generated/generated_DOCS.jsonl, for a
person to read (not in the repository: the Galaxy S10 manual's text may not be copied into it).

    python -m benchmarks.bench_generated [--docs northwind,galaxy-s10] [--questions 50]
        [--generator qwen2.5-coder-1.5b] [--models smollm2-135m,gemma3-270m] [--max-tokens 128]

One fleet serves every step, its model pools taking turns: the generator writes both sets while
the bundled models answer the human sets, then the generated sets are asked. Wall times here
are not a measure of anything (pools wait for their turns); accuracy and hit rates are.
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
from producer import generation_client
from shared.config import Settings
from shared.report.stats import bootstrap_ci
from shared.state import batch_store, generations


def ask(env: dict, questions: Path, collection: str, models: list[str], max_tokens: int) -> str:
    models_args = [arg for model in models for arg in ("-m", model)]
    return json.loads(ragfleet(env, "ask", str(questions), "-c", collection, *models_args,
                               "--max-tokens", str(max_tokens), "--top-k", "4", "--no-wait",
                               "--json"))["batch"]


def wait_finished(client, batch_ids: list[str]) -> None:
    while any(batch_store.get(client, b)["status"] not in batch_store.FINISHED
              for b in batch_ids):
        time.sleep(5)


def hit_rate(results: list[dict]) -> dict:
    """Hit rate at k with a bootstrap interval, each question once (retrieval is shared)."""
    by_question = {r.get("base_id") or r["question_id"]: r["retrieval"]
                   for r in results if r.get("retrieval")}
    hits = [int(m["rank"] is not None) for m in by_question.values()]
    if not hits:
        return {"questions": 0, "hit_rate": None, "ci95": None}
    return {"questions": len(hits), "hit_rate": sum(hits) / len(hits),
            "ci95": bootstrap_ci(hits)}


def verdict(env: dict, client, batch_id: str) -> dict:
    """What `results` says of one batch, cut to the figures compared here."""
    report = json.loads(ragfleet(env, "results", batch_id, "--format", "json"))
    keep = ("answered", "failed", "cosine_mean", "cosine_ci95", "groundedness_mean",
            "groundedness_ci95", "answer_relevance_mean", "completion_tokens_mean", "cut")
    return {"batch": batch_id,
            "models": {row["model"]: {k: row.get(k) for k in keep} for row in report["summary"]},
            "paired": [{k: p[k] for k in ("model_a", "model_b", "questions", "cosine_diff_mean",
                                          "cosine_diff_ci95", "groundedness_diff_mean",
                                          "groundedness_diff_ci95")}
                       for p in report["paired"]],
            "retrieval": hit_rate(batch_store.results(client, batch_id))}


def agreement(human: dict, generated: dict) -> dict:
    """Where the two sets agree: the order of each pair of models, and whether each pair's
    difference is told apart from zero by both, one or neither."""
    rows = []
    for h, g in zip(human["paired"], generated["paired"]):
        def side(p: dict) -> str:
            low, high = p["cosine_diff_ci95"]
            return "a" if low > 0 else "b" if high < 0 else "tie"
        rows.append({"pair": [h["model_a"], h["model_b"]],
                     "same_order": (h["cosine_diff_mean"] > 0) == (g["cosine_diff_mean"] > 0),
                     "human_verdict": side(h), "generated_verdict": side(g)})
    return {"pairs": rows,
            "rank_human": sorted(human["models"], key=lambda m: -human["models"][m]["cosine_mean"]),
            "rank_generated": sorted(generated["models"],
                                     key=lambda m: -generated["models"][m]["cosine_mean"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", default="northwind,galaxy-s10")
    parser.add_argument("--questions", type=int, default=50)
    parser.add_argument("--generator", default="qwen2.5-coder-1.5b")
    parser.add_argument("--models", default="smollm2-135m,gemma3-270m")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--resume", action="store_true",
                        help="go on with the jobs and batches of an interrupted run (its fleet's "
                             "Redis keeps them) instead of starting afresh")
    args = parser.parse_args()
    doc_sets, models = args.docs.split(","), args.models.split(",")
    data_dir = PROJECT_ROOT / ".ragfleet" / "bench-generated"  # kept for a look afterwards
    state_path = data_dir / "bench-state.json"  # the jobs and batches sent so far
    if not args.resume:
        shutil.rmtree(data_dir, ignore_errors=True)
    state = json.loads(state_path.read_text()) if state_path.is_file() else {}

    def remember(kind: str, docs: str, value: str) -> None:
        state.setdefault(kind, {})[docs] = value
        state_path.write_text(json.dumps(state, indent=1))

    env = fleet_env(data_dir)
    figures: dict = {"generator": args.generator, "models": models, "questions": args.questions,
                     "max_tokens": args.max_tokens, "top_k": 4, "seed": args.seed,
                     "sets": {d: {} for d in doc_sets}}
    with tempfile.TemporaryDirectory() as tmp:
        ragfleet(env, "up", *[a for m in [args.generator, *models] for a in ("--model", m)],
                 "--threads", str(args.threads))
        try:
            _, client = connection.connect(Settings(data_dir=data_dir))
            for docs in doc_sets:  # the generator writes while the others answer people's set
                if docs in state.get("job", {}):
                    continue
                ragfleet(env, "ingest", *map(str, sorted(DOCS[docs].glob("*.pdf"))), "-c", docs,
                         "--wait")
                remember("job", docs, json.loads(ragfleet(
                    env, "questions", "generate", docs, "-m", args.generator,
                    "-n", str(args.questions), "--seed", str(args.seed), "--no-wait",
                    "--json"))["job"])
                human = Path(tmp) / f"human-{docs}.jsonl"
                questions_file(DOCS[docs], args.questions, human)
                remember("human", docs, ask(env, human, docs, models, args.max_tokens))
            for docs in doc_sets:
                job = state["job"][docs]
                out = data_dir / f"generated_{docs}.jsonl"
                generation_client.wait(client, job, len(generations.get(client, job)["passages"]))
                report = json.loads(ragfleet(env, "questions", "collect", job, "-o", str(out),
                                             "--force", "--no-wait", "--json"))
                figures["sets"][docs]["generation"] = report
                print(json.dumps(report), flush=True)
                if docs not in state.get("generated", {}):
                    remember("generated", docs, ask(env, out, docs, models, args.max_tokens))
            wait_finished(client, [*state["human"].values(), *state["generated"].values()])
            for docs in doc_sets:
                human = verdict(env, client, state["human"][docs])
                generated = verdict(env, client, state["generated"][docs])
                figures["sets"][docs].update(human=human, generated=generated,
                                             agreement=agreement(human, generated))
        finally:
            ragfleet(env, "down")
    print(json.dumps({d: s["agreement"] for d, s in figures["sets"].items()}, indent=2))
    machine.write("generated_sets", figures)


if __name__ == "__main__":
    main()
