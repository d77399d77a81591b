"""The fleet's own overhead: the same questions through the whole fleet (producer, Redis,
retrieval and scoring on the cpu pool, generation on a model pool) and through
llama-cpp-python called directly on the identical prompts, in one run, same model, same
threads, same parameters. Writes benchmarks/results/overhead.json with a top-level `ratio`
(fleet wall time / bare generation time).

    .venv/bin/python -m benchmarks.bench_overhead [--questions 10] [--max-tokens 64]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import machine
from broker import connection
from shared.config import PROJECT_ROOT, Settings
from shared.llm.catalog import load_catalog
from shared.retrieval import prompts
from shared.state import batch_store

MODEL = "smollm2-135m"
PDF = PROJECT_ROOT / "data" / "northwind" / "Northwind_Standard_Benefits_Details.pdf"
QUESTIONS = PROJECT_ROOT / "data" / "northwind" / "standard_questions.jsonl"


def ragfleet(env: dict, *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "producer.cli", *args], env=env, cwd=PROJECT_ROOT,
                         capture_output=True, text=True, timeout=1800)
    if out.returncode:
        raise SystemExit(f"ragfleet {' '.join(args)} failed: {out.stderr.strip()}")
    return out.stdout


def fleet_env(data_dir: Path) -> dict:
    """A fleet of its own in data_dir: none of the caller's ragfleet or Redis settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAGFLEET_") and k != "REDIS_URL"}
    env["RAGFLEET_DATA_DIR"] = str(data_dir)
    return env


def through_the_fleet(data_dir: Path, questions: Path, max_tokens: int, threads: int,
                      settings_env: dict | None = None):
    env = {**fleet_env(data_dir), **(settings_env or {})}
    ragfleet(env, "up", "--model", MODEL, "--threads", str(threads))
    try:
        ragfleet(env, "ingest", str(PDF), "-c", "bench", "--wait")
        started = time.perf_counter()
        summary = json.loads(ragfleet(env, "ask", str(questions), "-c", "bench", "-m", MODEL,
                                      "--max-tokens", str(max_tokens), "--top-k", "4",
                                      "--temperature", "0", "--wait", "--json"))
        wall = time.perf_counter() - started
        settings = Settings(data_dir=data_dir)
        url, client = connection.connect(settings)
        results = batch_store.results(client, summary["batch"])
        contexts = {r["unit"]: batch_store.contexts(client, summary["batch"], r["unit"])
                    for r in results}
    finally:
        ragfleet(env, "down")
    return wall, summary, results, contexts


def bare(results: list[dict], contexts: dict, max_tokens: int, threads: int) -> list[float]:
    """llama-cpp-python alone: the same messages, its own chat formatting from the GGUF."""
    from llama_cpp import Llama

    settings = Settings()
    model = load_catalog(settings.catalog_path).get(MODEL)
    llm = Llama(model_path=str(model.path(settings.models_dir)), n_ctx=model.n_ctx,
                n_threads=threads, n_threads_batch=threads, seed=0, verbose=False)
    times = []
    for r in results:
        kept = contexts[r["unit"]]["contexts"][:r["contexts_used"]]
        messages = [m.model_dump() for m in prompts.messages_for(r["question"], kept)]
        started = time.perf_counter()
        llm.create_chat_completion(messages=messages, max_tokens=max_tokens, temperature=0,
                                   top_p=model.top_p)
        times.append(time.perf_counter() - started)
    return times


def alone(results: list[dict], contexts: dict, threads: int) -> dict:
    """The pool's own engine with nothing beside it: the batch's answers asked again, in the
    order the pool answered them, with the same prompt, cap and sampling; by question id.
    Against a batch's own records this is a pool's speed alone and during a batch (retrieval of
    the next questions and scoring of the last answers running on the cpu pool beside it)."""
    from shared.llm.llama_engine import LlamaEngine
    from shared.llm.requests import GenerationRequest

    settings = Settings()
    model = load_catalog(settings.catalog_path).get(MODEL)
    engine = LlamaEngine(model, model.ensure_file(settings.models_dir), threads)
    found = {}
    for r in sorted(results, key=lambda r: r["started_at"]):
        kept = contexts[r["unit"]]["contexts"][:r["contexts_used"]]
        found[r["question_id"]] = engine.generate(GenerationRequest(
            model=MODEL, messages=prompts.messages_for(r["question"], kept),
            max_tokens=r["max_tokens"], temperature=0.0))
    return found


def paired(results: list[dict], alone_results: dict) -> list[dict]:
    return [{"in_batch": r, "alone": alone_results[r["question_id"]]} for r in results
            if r["question_id"] in alone_results]


def speed_alone_and_in_batch(pairs: list[dict]) -> dict:
    """Time to first token and decoding tokens/s, paired per answer (the same prompt)."""
    same = [p for p in pairs if p["alone"].text == (p["in_batch"]["answer"] or "")
            + (p["in_batch"].get("cut_tail") or "")]

    def ratios(key: str) -> list[float]:  # the batch's record and the engine's result share names
        return [p["in_batch"][key] / getattr(p["alone"], key) for p in pairs
                if getattr(p["alone"], key) and p["in_batch"].get(key)]

    decode, ttft = ratios("tokens_per_s"), ratios("ttft_s")
    return {
        "answers": len(pairs),
        "same_text": len(same),
        "decode_tokens_per_s": {
            "alone": statistics.mean(p["alone"].tokens_per_s for p in pairs),
            "in_batch": statistics.mean(p["in_batch"]["tokens_per_s"] for p in pairs),
            "ratio_median": statistics.median(decode), "ratio_min": min(decode)},
        "ttft_s": {
            "alone": statistics.mean(p["alone"].ttft_s for p in pairs),
            "in_batch": statistics.mean(p["in_batch"]["ttft_s"] for p in pairs),
            "ratio_median": statistics.median(ttft), "ratio_max": max(ttft)},
        "notes": "ratio: in the batch / alone, per answer; decode < 1 or ttft > 1 means the "
                 "cpu pool's work beside the pool slowed it",
    }


def fleet_run(subset: Path, data_dir: Path, args, settings_env: dict | None = None) -> dict:
    wall, summary, results, contexts = through_the_fleet(data_dir, subset, args.max_tokens,
                                                         args.threads, settings_env)
    return {"wall": wall, "summary": summary, "results": results, "contexts": contexts}


def scoring_figures(run: dict, bare_s: float, alone_results: dict) -> dict:
    """One fleet run against bare generation and the pool alone: what scoring beside it cost."""
    results = run["results"]
    return {
        "fleet_wall_s": run["wall"],
        "ratio_to_bare": run["wall"] / bare_s,
        "fleet_generation_s": sum(r["response_s"] for r in results),
        "mean_score_s": statistics.mean(r.get("score_s") or 0.0 for r in results),
        "mean_score_wait_s": statistics.mean(r.get("score_wait_s") or 0.0 for r in results),
        "pool_speed_alone_and_in_batch": speed_alone_and_in_batch(paired(results, alone_results)),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--questions", type=int, default=10)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--no-scoring-at-once", action="store_true",
                        help="skip the second fleet run that scores beside the pool "
                             "(RAGFLEET_SCORE_WAITS_FOR_POOLS=0)")
    parser.add_argument("--at-once-first", action="store_true",
                        help="run the fleet that scores at once before the default one (this "
                             "machine drifts by ~10%% between runs: swap the order to tell)")
    parser.add_argument("--out", default="overhead", help="benchmarks/results/OUT.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        subset = Path(tmp) / "questions.jsonl"
        subset.write_text("\n".join(QUESTIONS.read_text().splitlines()[:args.questions]) + "\n")
        runs = {}
        order = ["at_once", "default"] if args.at_once_first else ["default", "at_once"]
        for name in order:
            if name == "default":
                runs[name] = fleet_run(subset, Path(tmp) / "data", args)
            elif not args.no_scoring_at_once:
                runs[name] = fleet_run(subset, Path(tmp) / "data-at-once", args,
                                       {"RAGFLEET_SCORE_WAITS_FOR_POOLS": "0"})
        run, at_once = runs["default"], runs.get("at_once")
    wall, summary, results, contexts = (run["wall"], run["summary"], run["results"],
                                        run["contexts"])
    bare_times = bare(results, contexts, args.max_tokens, args.threads)
    alone_results = alone(results, contexts, args.threads)
    interference = speed_alone_and_in_batch(paired(results, alone_results))
    n = len(results)
    generation = sum(r["response_s"] for r in results)

    def mean_ms(key: str) -> float:
        return 1000 * statistics.mean(r.get(key) or 0.0 for r in results)

    # the pool's idle time between two questions: the queue hop, storing the previous answer
    # and dispatching its scoring
    ordered = sorted(results, key=lambda r: r["started_at"])
    gaps = [b["started_at"] - a["finished_at"] for a, b in zip(ordered, ordered[1:])]
    outside_ms = 1000 * (wall - generation) / n  # everything that is not the model, per question
    figures = {
        "ratio": wall / sum(bare_times),
        "target": 1.05,
        "questions": n,
        "model": MODEL,
        "threads": args.threads,
        "max_tokens": args.max_tokens,
        "fleet_wall_s": wall,
        "bare_generation_s": sum(bare_times),
        "fleet_generation_s": generation,
        "generation_ratio": generation / sum(bare_times),
        "per_question_overhead_ms": {
            "outside_generation": outside_ms,
            "retrieval": mean_ms("retrieval_s"),
            "prompt_building": mean_ms("prompt_s"),
            "scoring": mean_ms("score_s"),
            "scoring_wait": mean_ms("score_wait_s"),
            "queue_and_storage_gap": 1000 * statistics.mean(gaps) if gaps else None,
        },
        "pool_speed_alone_and_in_batch": interference,
        "scoring": {
            "waits_for_pools": scoring_figures(run, sum(bare_times), alone_results),
            "at_once": at_once and scoring_figures(at_once, sum(bare_times), alone_results),
            "notes": "the same batch twice in one run: scoring waiting while the pool "
                     "generates (the default) and scoring at once beside it "
                     "(RAGFLEET_SCORE_WAITS_FOR_POOLS=0); each paired per answer with the "
                     "pool's engine alone on the same prompts",
        },
        "notes": "retrieval runs on the cpu pool while the model pool generates the previous "
                 "answer, so only the first question's retrieval and the scoring left at the "
                 "end add to the wall time",
        "batch": summary["batch"],
        "order": order,
        "command": ".venv/bin/python -m benchmarks.bench_overhead "
                   f"--questions {args.questions} --max-tokens {args.max_tokens}"
                   + (" --at-once-first" if args.at_once_first else "")
                   + (f" --out {args.out}" if args.out != "overhead" else ""),
    }
    print(json.dumps({k: figures[k] for k in ("ratio", "fleet_wall_s", "bare_generation_s",
                                              "scoring")}, indent=1, default=str))
    machine.write(args.out, figures)


if __name__ == "__main__":
    main()
