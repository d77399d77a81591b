import pytest

from shared.errors import UsageError
from shared.report import gates

pytestmark = pytest.mark.unit

REPORT = {
    "summary": [
        {"model": "small", "cosine_mean": 0.72, "cosine_median": 0.7, "answered": 9, "failed": 1,
         "latency_p50_s": 2.0, "latency_p95_s": 6.5, "ttft_p50_s": 1.0, "tokens_per_s": 40.0,
         "peak_rss_bytes": 400 * 2**20},
        {"model": "big", "cosine_mean": None, "cosine_median": None, "answered": 0, "failed": 10,
         "latency_p50_s": None, "latency_p95_s": None, "ttft_p50_s": None, "tokens_per_s": None,
         "peak_rss_bytes": None},
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
