import numpy as np
import pytest

from shared.report.stats import bootstrap_ci, summarize

pytestmark = pytest.mark.unit


def result(model, qid, cosine, response_s, error=None):
    return {"model": model, "question_id": qid, "cosine": cosine, "response_s": response_s,
            "ttft_s": response_s / 4, "generation_s": response_s * 3 / 4,
            "completion_tokens": 31, "error": error, "model_file": f"{model}.gguf"}


def test_bootstrap_interval_contains_the_mean_and_is_reproducible():
    values = [0.2, 0.4, 0.6, 0.8, 0.5, 0.55]
    low, high = bootstrap_ci(values)
    assert low < np.mean(values) < high
    assert bootstrap_ci(values) == (low, high)
    assert bootstrap_ci([0.5]) is None
    assert bootstrap_ci([0.5, 0.5]) == (0.5, 0.5)


def test_summary_counts_latency_speedup_and_pairs():
    results = [
        result("big", "q1", 0.9, 10.0), result("big", "q2", 0.7, 20.0),
        result("big", "q3", None, 0, error="time limit"),
        result("small", "q1", 0.6, 2.0), result("small", "q2", 0.5, 4.0),
        result("small", "q3", 0.4, 3.0),
    ]
    out = summarize(results, ["big", "small"])
    big, small = out["summary"]
    assert (big["answered"], big["failed"], small["answered"]) == (2, 1, 3)
    assert big["cosine_mean"] == pytest.approx(0.8)
    assert big["latency_p50_s"] == pytest.approx(15.0) and small["latency_p50_s"] == pytest.approx(3.0)
    assert big["speedup_vs_slowest"] == pytest.approx(1.0)
    assert small["speedup_vs_slowest"] == pytest.approx(5.0)
    # 30 decoded tokens after the first, over 3/4 of the response time
    assert small["tokens_per_s"] == pytest.approx(90 / (9 * 0.75))
    (pair,) = out["paired"]
    assert pair["questions"] == 2  # q3 has no score for big
    assert pair["cosine_diff_mean"] == pytest.approx(((0.9 - 0.6) + (0.7 - 0.5)) / 2)


def test_cited_rank_finds_the_first_cited_page_among_the_hits():
    from shared.pipeline.answering import cited_rank

    retrieved = {"contexts": [{"document": "a.pdf", "page": 3}, {"document": "a.pdf", "page": 7},
                              {"document": "b.pdf", "page": 7}]}
    assert cited_rank({"sources": ["b.pdf#page=7", "a.pdf#page=7"]}, retrieved) == \
        {"cited": ["b.pdf#page=7", "a.pdf#page=7"], "rank": 2, "k": 3}
    assert cited_rank({"sources": ["a.pdf#page=9"]}, retrieved)["rank"] is None
    assert cited_rank({"sources": []}, retrieved) is None  # nothing cited: no metric
    assert cited_rank({"sources": ["a.pdf#page=3"]}, None) is None  # retrieval failed


def test_retrieval_metrics_count_each_question_once_and_low_scores_by_cause():
    from shared.report.stats import low_score_causes, retrieval_metrics

    def result(qid, model, rank, cosine):
        return {"question_id": qid, "model": model, "cosine": cosine,
                "retrieval": {"cited": ["x"], "rank": rank, "k": 4}}

    results = [result("q1", "a", 1, 0.9), result("q1", "b", 1, 0.3),
               result("q2", "a", None, 0.2), result("q2", "b", None, 0.8),
               result("q3", "a", 4, 0.4), {"question_id": "q4", "model": "a", "cosine": 0.1}]
    metrics = retrieval_metrics(results)
    assert metrics["questions"] == 3 and metrics["k"] == 4
    assert metrics["hit_rate"] == pytest.approx(2 / 3)
    assert metrics["mrr"] == pytest.approx((1 + 0 + 1 / 4) / 3)
    a = [r for r in results if r["model"] == "a"]
    assert low_score_causes(a) == {"retrieval_missed": 1, "model_missed": 1, "unknown": 1}
    assert retrieval_metrics([{"question_id": "q", "model": "a"}])["hit_rate"] is None


def test_checks_pass_rate_counts_checked_answers_only():
    results = [{**result("a", "q1", 0.5, 1.0), "checks_passed": True},
               {**result("a", "q2", 0.5, 1.0), "checks_passed": False},
               {**result("a", "q3", None, 1.0), "checks_passed": True},  # no reference: checked
               {**result("a", "q4", 0.5, 1.0), "checks_passed": None},  # no checks
               {**result("a", "q5", None, 0, error="time limit"), "checks_passed": None},
               result("b", "q1", 0.5, 1.0)]  # stored before checks existed
    a, b = summarize(results, ["a", "b"])["summary"]
    assert a["checked"] == 3 and a["checks_pass_rate"] == pytest.approx(2 / 3)
    assert (b["checked"], b["checks_pass_rate"]) == (0, None)


def test_summary_shows_prompt_and_new_tokens_and_answers_cut_by_the_cap():
    from shared.report import exports

    rows = [{**result("m", f"q{i}", 0.5, 4.0), "prompt_tokens": tokens, "completion_tokens": new,
             "finish_reason": reason}
            for i, (tokens, new, reason) in enumerate([(800, 40, "stop"), (1000, 128, "length"),
                                                      (900, 128, "length")])]
    rows.append(result("m", "failed", None, 0, error="time limit"))  # counts in no mean
    (summary,) = summarize(rows, ["m"])["summary"]
    assert summary["prompt_tokens_mean"] == pytest.approx(900)
    assert summary["completion_tokens_mean"] == pytest.approx(296 / 3)
    assert summary["cut"] == 2
    report = {"summary": [{**summary, "speedup_vs_slowest": 1.0}]}
    cells = dict(zip(exports.SUMMARY_HEADERS, exports.summary_rows(report)[0]))
    assert (cells["PROMPT TOK"], cells["NEW TOK"], cells["CUT"]) == ("900", "99", "2/3")
