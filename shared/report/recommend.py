"""Which model to run: the models on the Pareto front of accuracy, latency and memory, and the
one that meets a machine's limits with the best accuracy, with the figures behind the choice.

Works on the per-run summaries of a batch (one run per model) or of a comparison (one run per
batch and model): `label` names the key that identifies a run in the summaries and in the paired
differences. Accuracy is the mean cosine against the reference answers; a batch without
references is ranked by mean groundedness instead (the share of each answer's sentences its
contexts support), and says so. Latency is the median response time; memory the pool's
measured peak resident memory, or the model file's size where no peak was measured (labelled
"estimated")."""

from __future__ import annotations

import re
from dataclasses import dataclass

from shared.errors import UsageError

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|k|kb|kib|m|mb|mib|g|gb|gib|t|tb|tib)?\s*$", re.I)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min)?\s*$", re.I)
# binary units for memory, as `free -h` and `top` count it: 2GB means 2 GiB
_SIZE_POWERS = {"": 0, "b": 0, "k": 1, "m": 2, "g": 3, "t": 4}
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0}


def parse_memory(text: str) -> int:
    """'2GB', '1.5g', '512MiB', '800m' -> bytes (binary units; a bare number is bytes)."""
    match = _SIZE.match(text or "")
    if not match:
        raise UsageError(f"--max-memory {text}: give a size such as 2GB, 1.5G or 512MB")
    unit = (match.group(2) or "").lower()
    return int(float(match.group(1)) * 1024 ** _SIZE_POWERS[unit[:1]])


def parse_latency(text: str) -> float:
    """'5s', '5', '800ms', '2m' -> seconds (a bare number is seconds)."""
    match = _DURATION.match(text or "")
    if not match:
        raise UsageError(f"--max-latency {text}: give a duration such as 5s, 800ms or 2m")
    return float(match.group(1)) * _SECONDS[(match.group(2) or "s").lower()]


@dataclass(frozen=True)
class Limits:
    max_memory_bytes: int | None = None
    max_latency_s: float | None = None
    min_cosine: float | None = None

    def describe(self) -> str:
        parts = []
        if self.max_memory_bytes is not None:
            parts.append(f"memory <= {_gib(self.max_memory_bytes)}")
        if self.max_latency_s is not None:
            parts.append(f"median latency <= {self.max_latency_s:g} s")
        if self.min_cosine is not None:
            parts.append(f"cosine >= {self.min_cosine:g}")
        return ", ".join(parts) or "no limits"


def accuracy_metric(summary: list[dict]) -> str:
    """cosine where some run has references to be scored against; groundedness otherwise."""
    if any(s.get("cosine_mean") is not None for s in summary):
        return "cosine"
    if any(s.get("groundedness_mean") is not None for s in summary):
        return "groundedness"
    return "cosine"


@dataclass(frozen=True)
class Run:
    """The three figures of one run, as the recommendation compares them. `cosine` holds the
    accuracy measure named by `metric` (cosine, or groundedness without references)."""
    label: str
    cosine: float
    cosine_ci95: tuple[float, float] | None
    latency_s: float | None
    memory_bytes: int | None
    memory_estimated: bool
    metric: str = "cosine"

    @classmethod
    def of(cls, summary: dict, label: str, metric: str = "cosine") -> Run | None:
        if summary.get(f"{metric}_mean") is None:
            return None  # nothing scored: no accuracy to weigh
        peak = summary.get("peak_rss_bytes")
        size = summary.get("model_size")
        ci = summary.get(f"{metric}_ci95")
        return cls(summary[label], summary[f"{metric}_mean"], tuple(ci) if ci else None,
                   summary.get("latency_p50_s"), peak or size, not peak and bool(size), metric)

    def memory_text(self) -> str:
        if self.memory_bytes is None:
            return "memory unknown"
        estimated = " (estimated from the file)" if self.memory_estimated else ""
        return f"{_gib(self.memory_bytes)}{estimated}"

    def figures(self) -> str:
        ci = (f" (95% CI {self.cosine_ci95[0]:.3f}-{self.cosine_ci95[1]:.3f})"
              if self.cosine_ci95 else "")
        latency = f"{self.latency_s:.2f} s" if self.latency_s is not None else "unknown"
        memory = self.memory_text()
        memory = memory if self.memory_bytes is None else f"memory {memory}"
        return f"{self.metric} {self.cosine:.3f}{ci}, median latency {latency}, {memory}"


def _gib(size: int) -> str:
    return f"{size / 2**30:.2f} GiB" if size >= 2**30 else f"{size / 2**20:.0f} MiB"


def _dominates(a: Run, b: Run) -> bool:
    """a is at least as good as b on every known figure and better on one. A figure unknown
    for either run cannot be compared, so it never lets one run dominate the other."""
    pairs = [(a.cosine, b.cosine)]  # higher is better
    if a.latency_s is not None and b.latency_s is not None:
        pairs.append((-a.latency_s, -b.latency_s))
    elif a.latency_s is not None or b.latency_s is not None:
        return False
    if a.memory_bytes is not None and b.memory_bytes is not None:
        pairs.append((-a.memory_bytes, -b.memory_bytes))
    elif a.memory_bytes is not None or b.memory_bytes is not None:
        return False
    return all(x >= y for x, y in pairs) and any(x > y for x, y in pairs)


def pareto_front(runs: list[Run]) -> list[Run]:
    """The runs no other run beats on accuracy, latency and memory at once, best accuracy
    first: every other run is worse on all three than some run here."""
    front = [r for r in runs if not any(_dominates(o, r) for o in runs if o is not r)]
    return sorted(front, key=lambda r: -r.cosine)


def _shortfalls(run: Run, limits: Limits) -> list[str]:
    out = []
    if limits.max_memory_bytes is not None:
        if run.memory_bytes is None:
            out.append("memory unknown")
        elif run.memory_bytes > limits.max_memory_bytes:
            out.append(f"memory {run.memory_text()} > {_gib(limits.max_memory_bytes)}")
    if limits.max_latency_s is not None:
        if run.latency_s is None:
            out.append("latency unknown")
        elif run.latency_s > limits.max_latency_s:
            out.append(f"median latency {run.latency_s:.2f} s > {limits.max_latency_s:g} s")
    if limits.min_cosine is not None and run.metric != "cosine":
        out.append("no cosine (no reference answers)")
    elif limits.min_cosine is not None and run.cosine < limits.min_cosine:
        out.append(f"cosine {run.cosine:.3f} < {limits.min_cosine:g}")
    return out


def _paired(paired: list[dict], a: str, b: str,
            metric: str = "cosine") -> tuple[float, tuple[float, float] | None] | None:
    """Mean difference a - b of the metric over the questions both answered, with its
    interval."""
    for p in paired:
        if p.get(f"{metric}_diff_mean") is None:
            continue
        ci = p.get(f"{metric}_diff_ci95")
        if (p["model_a"], p["model_b"]) == (a, b):
            return p[f"{metric}_diff_mean"], tuple(ci) if ci else None
        if (p["model_a"], p["model_b"]) == (b, a):
            return -p[f"{metric}_diff_mean"], (-ci[1], -ci[0]) if ci else None
    return None


def recommend(summary: list[dict], paired: list[dict], limits: Limits,
              label: str = "model") -> dict:
    """The Pareto front, the runs that meet the limits, the best of them by accuracy, and
    the runs whose accuracy is within noise of it (paired interval including 0), with what
    each of those saves. `choice` is None when no run meets the limits."""
    metric = accuracy_metric(summary)
    runs = [r for r in (Run.of(s, label, metric) for s in summary) if r]
    excluded = {r.label: _shortfalls(r, limits) for r in runs}
    eligible = [r for r in runs if not excluded[r.label]]
    choice = max(eligible, key=lambda r: r.cosine, default=None)
    within_noise = []
    if choice:
        for other in eligible:
            if other is choice:
                continue
            diff = _paired(paired, choice.label, other.label, metric)
            if diff and diff[1] and diff[1][0] <= 0 <= diff[1][1]:
                within_noise.append({"run": other.label, f"{metric}_diff": diff[0],
                                     f"{metric}_diff_ci95": list(diff[1]),
                                     "saves": _savings(choice, other)})
    return {
        "metric": metric,
        "limits": limits.describe(),
        "pareto_front": [_as_dict(r) for r in pareto_front(runs)],
        "choice": _as_dict(choice) if choice else None,
        "within_noise": within_noise,
        "excluded": {k: v for k, v in excluded.items() if v},
        "unscored": [s[label] for s in summary if s.get(f"{metric}_mean") is None],
    }


def _savings(choice: Run, other: Run) -> list[str]:
    """What running `other` instead of `choice` saves, in the figures where it is cheaper."""
    saves = []
    if other.latency_s and choice.latency_s and other.latency_s < choice.latency_s:
        saves.append(f"{choice.latency_s / other.latency_s:.1f}x faster")
    if other.memory_bytes and choice.memory_bytes and other.memory_bytes < choice.memory_bytes:
        saves.append(f"{_gib(choice.memory_bytes - other.memory_bytes)} less memory")
    return saves


def _as_dict(run: Run) -> dict:
    return {"run": run.label, f"{run.metric}_mean": run.cosine,
            f"{run.metric}_ci95": list(run.cosine_ci95) if run.cosine_ci95 else None,
            "latency_p50_s": run.latency_s, "memory_bytes": run.memory_bytes,
            "memory_estimated": run.memory_estimated, "figures": run.figures()}


def lines(result: dict) -> list[str]:
    """The recommendation in plain sentences, choice first."""
    out = []
    choice = result["choice"]
    metric = result.get("metric", "cosine")
    if metric != "cosine":
        out.append(f"Ranked by {metric}: the answers have no reference answers to score "
                   "cosine against (the share of each answer's sentences its contexts support).")
    if choice:
        out.append(f"Recommended ({result['limits']}): {choice['run']}: {choice['figures']}.")
        for near in result["within_noise"]:
            lo, hi = near[f"{metric}_diff_ci95"]
            saves = f"; {near['run']} is {' and '.join(near['saves'])}" if near["saves"] else ""
            out.append(f"Within noise: {choice['run']} - {near['run']} {metric} "
                       f"{near[f'{metric}_diff']:+.3f} (95% CI {lo:+.3f} to {hi:+.3f}): the "
                       f"questions cannot tell them apart{saves}.")
    else:
        out.append(f"No model meets the limits ({result['limits']}).")
    for run, why in result["excluded"].items():
        out.append(f"Excluded {run}: {'; '.join(why)}.")
    front = ", ".join(r["run"] for r in result["pareto_front"])
    if front:
        out.append(f"Pareto front (no other model is more accurate, faster and smaller at "
                   f"once): {front}.")
    if result["unscored"]:
        out.append(f"Not weighed (no scored answers): {', '.join(result['unscored'])}.")
    return out
