"""Gates for CI: `ragfleet results B --fail-under cosine=0.6 --fail-over latency_p95=5` fails
(one line naming every shortfall) when a model or the batch's retrieval gets worse."""

from __future__ import annotations

from dataclasses import dataclass

from shared.errors import RagfleetError, UsageError

# metric -> (where it is read, how it is shown); per model unless "batch"
HIGHER_IS_BETTER = {
    "cosine": "cosine_mean",
    "cosine_median": "cosine_median",
    "answered": "answered_share",
    "checks": "checks_pass_rate",  # share of checked answers passing all their checks
    # reference-free: need no reference answer
    "groundedness": "groundedness_mean",
    "answer_relevance": "answer_relevance_mean",
    "context_relevance": "context_relevance_mean",
    "tokens_per_s": "tokens_per_s",
    "hit_rate": "batch:hit_rate",
    "mrr": "batch:mrr",
}
LOWER_IS_BETTER = {
    "latency_p50": "latency_p50_s",
    "latency_p95": "latency_p95_s",
    "ttft_p50": "ttft_p50_s",
    "failed": "failed",
    "peak_memory_mb": "peak_rss_mb",
}


class GateFailed(RagfleetError):
    pass


@dataclass(frozen=True)
class Gate:
    metric: str
    limit: float
    lower_is_better: bool

    @property
    def field(self) -> str:
        table = LOWER_IS_BETTER if self.lower_is_better else HIGHER_IS_BETTER
        return table[self.metric]


def parse(spec: str, lower_is_better: bool) -> Gate:
    """METRIC=VALUE, e.g. cosine=0.6 or latency_p95=5."""
    known = LOWER_IS_BETTER if lower_is_better else HIGHER_IS_BETTER
    option = "--fail-over" if lower_is_better else "--fail-under"
    name, sep, value = spec.partition("=")
    if not sep or name not in known:
        raise UsageError(f"{option} {spec}: give METRIC=VALUE with METRIC one of "
                         f"{', '.join(sorted(known))}")
    try:
        return Gate(name, float(value), lower_is_better)
    except ValueError:
        raise UsageError(f"{option} {spec}: {value!r} is not a number") from None


def shortfalls(report: dict, gates: list[Gate]) -> list[str]:
    """What falls short, one phrase each; empty when every gate holds. A metric that cannot be
    computed (no scored answer, no cited page) falls short too: a gate must not pass blind."""
    found = []
    for gate in gates:
        if gate.field.startswith("batch:"):
            subjects = [("retrieval", (report.get("retrieval") or {}).get(gate.field[6:]))]
        else:
            subjects = [(s["model"], _value(s, gate.field)) for s in report["summary"]]
        for who, value in subjects:
            if value is None:
                found.append(f"{who} has no {gate.metric}")
            elif (value > gate.limit) if gate.lower_is_better else (value < gate.limit):
                sign = ">" if gate.lower_is_better else "<"
                found.append(f"{who} {gate.metric} {value:.3g} {sign} {gate.limit:g}")
    return found


def _value(summary: dict, field: str) -> float | None:
    if field == "answered_share":
        total = summary["answered"] + summary["failed"]
        return summary["answered"] / total if total else None
    if field == "peak_rss_mb":
        peak = summary.get("peak_rss_bytes")
        return peak / 2**20 if peak else None
    return summary.get(field)


def check(report: dict, gates: list[Gate]) -> None:
    failed = shortfalls(report, gates)
    if failed:
        raise GateFailed("gate failed: " + "; ".join(failed))
