"""Per-model aggregates of a batch: accuracy with a bootstrap interval, latency percentiles,
tokens per second, speedup against the slowest model, and paired accuracy differences."""

from __future__ import annotations

from itertools import combinations

import numpy as np

BOOTSTRAP_SAMPLES = 2000
SEED = 20241122  # fixed: the same results always give the same intervals


def bootstrap_ci(values, confidence: float = 0.95, samples: int = BOOTSTRAP_SAMPLES,
                 seed: int = SEED) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean; None for fewer than two values."""
    data = np.asarray(values, dtype=float)
    if len(data) < 2:
        return None
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), size=(samples, len(data)))].mean(axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(low), float(high)


def _percentile(values, q: float) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


REFERENCE_FREE = ("groundedness", "answer_relevance", "context_relevance")
# the accuracy measures compared question by question between models
PAIRED_METRICS = ("cosine", "groundedness")


def _ci(values: list) -> list[float] | None:
    ci = bootstrap_ci([v for v in values if v is not None])
    return list(ci) if ci else None


def _mean(values: list) -> float | None:
    known = [v for v in values if v is not None]
    return float(np.mean(known)) if known else None


def _span(values: list[int]) -> list[int] | None:
    return [min(values), max(values)] if values else None


def model_summary(model: str, results: list[dict]) -> dict:
    # a failure is any result with an error field set (an empty one from older versions too)
    ok = [r for r in results if r.get("error") is None and not r.get("cancelled")]
    failed = [r for r in results if r.get("error") is not None and not r.get("cancelled")]
    scored = [r["cosine"] for r in ok if r.get("cosine") is not None]
    # answers to questions with checks (contains, regex, exact): all of a question's passed?
    checked = [r["checks_passed"] for r in ok if r.get("checks_passed") is not None]
    latency = [r["response_s"] for r in ok]
    ttft = [r["ttft_s"] for r in ok]
    gen_time = sum(r["generation_s"] for r in ok)
    gen_tokens = sum(max(0, r["completion_tokens"] - 1) for r in ok)
    ci = bootstrap_ci(scored)
    return {
        "model": model,
        "answered": len(ok),
        "failed": len(failed),
        "scored": len(scored),
        "cosine_mean": float(np.mean(scored)) if scored else None,
        "cosine_ci95": list(ci) if ci else None,
        "cosine_median": float(np.median(scored)) if scored else None,
        # reference-free (shared.pipeline.reference_free): every answer has them
        **{f"{name}_mean": _mean([r.get(name) for r in ok]) for name in REFERENCE_FREE},
        "groundedness_ci95": _ci([r.get("groundedness") for r in ok]),
        "checked": len(checked),
        "checks_pass_rate": sum(checked) / len(checked) if checked else None,
        "judges": judge_means(ok),
        "latency_p50_s": _percentile(latency, 50),
        "latency_p95_s": _percentile(latency, 95),
        "ttft_p50_s": _percentile(ttft, 50),
        "tokens_per_s": gen_tokens / gen_time if gen_time > 0 else None,
        # what an answer's time goes to: the prompt read (contexts, question, instruction),
        # the tokens written, and how many answers the cap on new tokens cut short
        "prompt_tokens_mean": _mean([r.get("prompt_tokens") for r in ok]),
        "completion_tokens_mean": _mean([r.get("completion_tokens") for r in ok]),
        "cut": sum(1 for r in ok if r.get("finish_reason") == "length"),
        "model_file": next((r.get("model_file") for r in ok), None),
        # what the model costs in memory and start-up: the pool process, model and KV cache
        "model_size": next((r.get("model_size") for r in ok), None),
        "quantization": next((r["quantization"] for r in ok if r.get("quantization")), None),
        "load_s": max((r["load_s"] for r in ok if r.get("load_s") is not None), default=None),
        "peak_rss_bytes": max((r["pool_peak_rss_bytes"] for r in ok
                               if r.get("pool_peak_rss_bytes")), default=None),
        # resident memory apart: anonymous (heap, KV cache, copied weights) and file-backed
        # (the mapped GGUF: clean pages the kernel may drop), as last seen by an answer
        "rss_anon_bytes": max((r["pool_rss_anon_bytes"] for r in ok
                               if r.get("pool_rss_anon_bytes")), default=None),
        "rss_file_bytes": max((r["pool_rss_file_bytes"] for r in ok
                               if r.get("pool_rss_file_bytes")), default=None),
        # how it was asked: the same for every answer of a model in a batch
        "sampling": next((r["sampling"] for r in ok if r.get("sampling")), None),
        "prompt": next((r["prompt"] for r in ok if r.get("prompt")), None),
        # caps on new tokens: the room each prompt left, at most what was asked
        "max_tokens_range": _span([r["max_tokens"] for r in ok if r.get("max_tokens")]),
        "low_scores": low_score_causes(ok),
        "cosine_spread": repeat_spread(ok),
    }


def judge_means(results: list[dict]) -> list[dict]:
    """Per judging model (`ragfleet judge`): the mean grade 1-5 of the answers it graded, how
    many it graded and how many it could not (no grade in its reply). Empty without judges."""
    by_judge: dict[str, list] = {}
    for r in results:
        for judge, j in (r.get("judgements") or {}).items():
            by_judge.setdefault(judge, []).append(j.get("grade"))
    rows = []
    for judge in sorted(by_judge):
        grades = [g for g in by_judge[judge] if g is not None]
        rows.append({"judge_model": judge, "judge_mean": float(np.mean(grades)) if grades else None,
                     "judged": len(grades), "failed": len(by_judge[judge]) - len(grades)})
    return rows


def summarize(results: list[dict], models: list[str]) -> dict:
    """`summary` per model (with speedup against the slowest) and `paired` cosine differences."""
    by_model = {m: [r for r in results if r["model"] == m] for m in models}
    summary = [model_summary(m, rs) for m, rs in by_model.items()]
    medians = [s["latency_p50_s"] for s in summary if s["latency_p50_s"]]
    slowest = max(medians) if medians else None
    for s in summary:
        s["speedup_vs_slowest"] = (slowest / s["latency_p50_s"]
                                   if slowest and s["latency_p50_s"] else None)
    return {"summary": summary, "paired": paired_differences(by_model),
            "retrieval": retrieval_metrics(results)}


# An answer this far from its reference is "low": was the cited page missing from the contexts
# (retrieval missed) or in front of the model (model missed)?
LOW_COSINE = 0.5


def retrieval_metrics(results: list[dict]) -> dict:
    """Per batch, over the questions whose reference cites pages (retrieval is shared by all
    models, so each question counts once): the share whose cited page is among the hits
    (hit rate at k) and the mean reciprocal rank of the first cited page found."""
    by_question = {r.get("base_id") or r["question_id"]: r["retrieval"]
                   for r in results if r.get("retrieval")}
    ranks = [m["rank"] for m in by_question.values()]
    if not ranks:
        return {"questions": 0, "hit_rate": None, "mrr": None, "k": None}
    return {"questions": len(ranks),
            "hit_rate": sum(r is not None for r in ranks) / len(ranks),
            "mrr": sum(1 / r for r in ranks if r) / len(ranks),
            "k": max(m["k"] for m in by_question.values())}


def repeat_spread(results: list[dict]) -> float | None:
    """With repeated questions (`ask --repeat N`): the mean, over questions, of the standard
    deviation of one model's cosine across the repeats. None without repeats."""
    by_question: dict[str, list[float]] = {}
    for r in results:
        if r.get("base_id") and r.get("cosine") is not None:
            by_question.setdefault(r["base_id"], []).append(r["cosine"])
    spreads = [float(np.std(v, ddof=1)) for v in by_question.values() if len(v) > 1]
    return float(np.mean(spreads)) if spreads else None


def low_score_causes(results: list[dict]) -> dict:
    """Answers scored below LOW_COSINE, by cause: the cited page was not retrieved, it was and
    the model still missed, or the reference cites nothing to tell."""
    causes = {"retrieval_missed": 0, "model_missed": 0, "unknown": 0}
    for r in results:
        if r.get("cosine") is None or r["cosine"] >= LOW_COSINE:
            continue
        match = r.get("retrieval")
        key = "unknown" if not match else "model_missed" if match["rank"] else "retrieval_missed"
        causes[key] += 1
    return causes


def paired_differences(by_model: dict[str, list[dict]]) -> list[dict]:
    """For each pair of models, the mean of (cosine A - cosine B) over the questions both
    answered with a score, with its bootstrap interval: the fair accuracy comparison; the same
    for groundedness, which needs no reference (`questions` counts the cosine pairs)."""
    pairs = []
    for a, b in combinations(by_model, 2):
        pair = {"model_a": a, "model_b": b}
        for metric in PAIRED_METRICS:
            scores = {m: {r["question_id"]: r[metric] for r in by_model[m]
                          if r.get(metric) is not None} for m in (a, b)}
            common = sorted(scores[a].keys() & scores[b].keys())
            diffs = [scores[a][q] - scores[b][q] for q in common]
            ci = bootstrap_ci(diffs)
            if metric == "cosine":
                pair["questions"] = len(common)
            else:
                pair[f"{metric}_questions"] = len(common)
            pair[f"{metric}_diff_mean"] = float(np.mean(diffs)) if diffs else None
            pair[f"{metric}_diff_ci95"] = list(ci) if ci else None
        pairs.append(pair)
    return pairs
