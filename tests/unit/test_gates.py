import pytest

from shared.errors import UsageError
from shared.report import gates

pytestmark = pytest.mark.unit

REPORT = {
    "summary": [
        {"model": "small", "cosine_mean": 0.72, "cosine_median": 0.7, "answered": 9, "failed": 1,
         "latency_p50_s": 2.0, "latency_p95_s": 6.5, "ttft_p50_s": 1.0, "tokens_per_s": 40.0,
         "peak_rss_bytes": 400 * 2**20, "checks_pass_rate": 0.75, "checked": 4},
        {"model": "big", "cosine_mean": None, "cosine_median": None, "answered": 0, "failed": 10,
         "latency_p50_s": None, "latency_p95_s": None, "ttft_p50_s": None, "tokens_per_s": None,
         "peak_rss_bytes": None, "checks_pass_rate": None, "checked": 0},
    ],
    "retrieval": {"questions": 10, "hit_rate": 0.9, "mrr": 0.61, "k": 4},
}


def test_gates_name_every_shortfall_and_pass_when_met():
    checks = [gates.parse("cosine=0.6", False), gates.parse("latency_p95=5", True),
              gates.parse("hit_rate=0.95", False)]
    assert gates.shortfalls(REPORT, checks) == [
        "big has no cosine", "small latency_p95 6.5 > 5", "big has no latency_p95",
        "retrieval hit_rate 0.9 < 0.95"]
    one = {**REPORT, "summary": REPORT["summary"][:1]}
    gates.check(one, [gates.parse("cosine=0.7", False), gates.parse("answered=0.9", False),
                      gates.parse("peak_memory_mb=512", True), gates.parse("mrr=0.6", False)])
    with pytest.raises(gates.GateFailed, match="gate failed: small cosine 0.72 < 0.8$"):
        gates.check(one, [gates.parse("cosine=0.8", False)])


@pytest.mark.parametrize("spec, lower, needle", [
    ("cosine", False, "give METRIC=VALUE"),
    ("accuracy=0.5", False, "METRIC one of"),
    ("cosine=high", False, "is not a number"),
    ("cosine=0.5", True, "--fail-over"),
])
def test_bad_gates_are_usage_errors(spec, lower, needle):
    with pytest.raises(UsageError, match=needle):
        gates.parse(spec, lower)


def test_checks_gate_reads_the_pass_rate_and_names_a_model_without_checked_answers():
    gate = gates.parse("checks=0.8", False)
    assert (gate.metric, gate.field, gate.limit) == ("checks", "checks_pass_rate", 0.8)
    assert gates.shortfalls(REPORT, [gate]) == ["small checks 0.75 < 0.8", "big has no checks"]
    assert gates.shortfalls(REPORT, [gates.parse("checks=0.75", False)]) == ["big has no checks"]
    with pytest.raises(gates.GateFailed, match="^gate failed: big has no checks$"):
        gates.check({"summary": REPORT["summary"][1:]}, [gates.parse("checks=0", False)])
