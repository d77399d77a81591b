import pytest

from shared.errors import UsageError
from shared.report import compare

pytestmark = pytest.mark.unit


def report(batch_id: str, scores: dict[str, dict[str, float]]) -> dict:
    results = [{"question_id": q, "model": m, "cosine": c, "error": None, "response_s": 1.0,
                "ttft_s": 0.5, "generation_s": 0.5, "completion_tokens": 10}
               for m, by_q in scores.items() for q, c in by_q.items()]
    return {"batch": {"id": batch_id, "models": list(scores), "collection": "nw", "version": 1,
                      "created_at": 0.0, "params": {}}, "results": results}


def test_runs_are_compared_on_the_questions_every_run_answered():
    monday = report("b-mon", {"small": {"q1": 0.5, "q2": 0.7, "q3": 0.9}})
    tuesday = report("b-tue", {"small": {"q1": 0.6, "q2": 0.8}, "big": {"q1": 0.9, "q2": 0.9}})
    result = compare.build([monday, tuesday])
    assert result["questions"] == 2  # q3 is missing from Tuesday's runs
    by_run = {s["run"]: s for s in result["summary"]}
    assert set(by_run) == {"b-mon:small", "b-tue:small", "b-tue:big"}
    assert by_run["b-mon:small"]["cosine_mean"] == pytest.approx(0.6)  # q1, q2 only
    (pair,) = [p for p in result["paired"]
               if (p["model_a"], p["model_b"]) == ("b-mon:small", "b-tue:small")]
    assert pair["questions"] == 2 and pair["cosine_diff_mean"] == pytest.approx(-0.1)


def test_nothing_in_common_or_one_batch_is_a_usage_error():
    with pytest.raises(UsageError, match="at least two batches"):
        compare.build([report("b-1", {"a": {"q1": 0.5}})])
    with pytest.raises(UsageError, match="share no question"):
        compare.build([report("b-1", {"a": {"q1": 0.5}}), report("b-2", {"a": {"q2": 0.5}})])


def test_a_comparison_recommends_a_run_by_its_label():
    from shared.report import recommend

    monday = report("b-mon", {"small": {"q1": 0.5, "q2": 0.7, "q3": 0.6}})
    tuesday = report("b-tue", {"small": {"q1": 0.9, "q2": 0.95, "q3": 0.92}})
    result = compare.build([monday, tuesday])
    advice = recommend.recommend(result["summary"], result["paired"], recommend.Limits(),
                                 label="run")
    assert advice["choice"]["run"] == "b-tue:small"
    assert advice["within_noise"] == []  # every question better on Tuesday


def test_batches_without_references_are_compared_on_groundedness():
    def grounded(batch_id, by_q):
        made = report(batch_id, {"m": {q: None for q in by_q}})
        for r in made["results"]:
            r["groundedness"] = by_q[r["question_id"]]
        return made

    result = compare.build([grounded("b-a", {"q1": 1.0, "q2": 0.5}),
                            grounded("b-b", {"q1": 0.5, "q2": 0.5, "q3": 0.0})])
    assert result["metric"] == "groundedness" and result["questions"] == 2
    (pair,) = result["paired"]
    assert pair["groundedness_diff_mean"] == pytest.approx(0.25)
    by_run = {s["run"]: s for s in result["summary"]}
    assert by_run["b-b:m"]["groundedness_mean"] == pytest.approx(0.5)  # q3 left out
