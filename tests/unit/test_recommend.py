"""Which model to run: Pareto front, limits, within-noise, parsing of the limits."""

from __future__ import annotations

import pytest

from shared.errors import UsageError
from shared.report import recommend
from shared.report.recommend import Limits, parse_latency, parse_memory
from shared.report.stats import summarize

GIB = 2**30


def summary(model, cosine, latency, peak=None, size=None, ci=None):
    return {"model": model, "cosine_mean": cosine, "cosine_ci95": ci, "latency_p50_s": latency,
            "peak_rss_bytes": peak, "model_size": size}


def pair(a, b, mean, ci):
    return {"model_a": a, "model_b": b, "questions": 20, "cosine_diff_mean": mean,
            "cosine_diff_ci95": ci}


BIG = summary("big", 0.80, 9.0, peak=6 * GIB, ci=(0.76, 0.84))
SMALL = summary("small", 0.70, 1.0, peak=1 * GIB, ci=(0.66, 0.74))
WORSE = summary("worse", 0.65, 2.0, peak=2 * GIB)  # slower, bigger and less accurate than small
CLEAR = [pair("big", "small", 0.10, (0.06, 0.14)), pair("big", "worse", 0.15, (0.1, 0.2)),
         pair("small", "worse", 0.05, (0.01, 0.09))]


def test_the_front_drops_only_what_another_model_beats_on_every_figure():
    result = recommend.recommend([BIG, SMALL, WORSE], CLEAR, Limits())
    assert [r["run"] for r in result["pareto_front"]] == ["big", "small"]
    assert result["choice"]["run"] == "big" and result["within_noise"] == []


def test_limits_exclude_with_the_reason_and_the_best_within_them_is_chosen():
    result = recommend.recommend([BIG, SMALL, WORSE], CLEAR, Limits(max_memory_bytes=2 * GIB))
    assert result["choice"]["run"] == "small"
    assert result["excluded"] == {"big": ["memory 6.00 GiB > 2.00 GiB"]}
    text = recommend.lines(result)
    assert text[0].startswith("Recommended (memory <= 2.00 GiB): small: cosine 0.700")
    assert "Excluded big: memory 6.00 GiB > 2.00 GiB." in text


def test_latency_and_cosine_limits():
    result = recommend.recommend([BIG, SMALL, WORSE], CLEAR,
                                 Limits(max_latency_s=1.5, min_cosine=0.75))
    assert result["choice"] is None
    assert result["excluded"]["big"] == ["median latency 9.00 s > 1.5 s"]
    assert result["excluded"]["small"] == ["cosine 0.700 < 0.75"]
    assert recommend.lines(result)[0] == ("No model meets the limits (median latency <= 1.5 s, "
                                          "cosine >= 0.75).")


def test_a_difference_within_noise_is_said_plainly_with_what_the_other_saves():
    noisy = [pair("big", "small", 0.02, (-0.01, 0.05))]
    result = recommend.recommend([BIG, SMALL], noisy, Limits())
    assert result["choice"]["run"] == "big"
    assert result["within_noise"] == [{"run": "small", "cosine_diff": 0.02,
                                       "cosine_diff_ci95": [-0.01, 0.05],
                                       "saves": ["9.0x faster", "5.00 GiB less memory"]}]
    line = recommend.lines(result)[1]
    assert "cannot tell them apart" in line and "small is 9.0x faster and 5.00 GiB less" in line


def test_the_pair_is_found_in_either_order():
    noisy = [pair("small", "big", -0.02, (-0.05, 0.01))]
    result = recommend.recommend([BIG, SMALL], noisy, Limits())
    assert result["within_noise"][0]["cosine_diff_ci95"] == [-0.01, 0.05]


def test_memory_falls_back_to_the_file_size_and_says_so():
    sized = summary("sized", 0.6, 1.0, size=700 * 2**20)
    result = recommend.recommend([sized], [], Limits(max_memory_bytes=GIB))
    assert result["choice"]["memory_estimated"] is True
    assert "700 MiB (estimated from the file)" in result["choice"]["figures"]


def test_unknown_memory_fails_a_memory_limit_and_never_dominates():
    unknown = summary("unknown", 0.9, 0.5)
    result = recommend.recommend([unknown, SMALL], [], Limits(max_memory_bytes=4 * GIB))
    assert result["excluded"] == {"unknown": ["memory unknown"]}
    assert {r["run"] for r in recommend.recommend([unknown, SMALL], [], Limits())
            ["pareto_front"]} == {"unknown", "small"}


def test_a_model_without_scores_is_named_not_weighed():
    result = recommend.recommend([SMALL, summary("mute", None, 1.0)], [], Limits())
    assert result["unscored"] == ["mute"] and result["choice"]["run"] == "small"


def test_from_real_summaries_of_results():
    """The keys recommend reads are the ones stats.summarize writes."""
    results = []
    for q, (a, b) in enumerate([(0.9, 0.5), (0.8, 0.4), (0.85, 0.45)]):
        for model, cosine, latency in (("a", a, 3.0), ("b", b, 1.0)):
            results.append({"model": model, "question_id": f"q{q}", "cosine": cosine,
                            "response_s": latency, "ttft_s": 0.1, "generation_s": 1.0,
                            "completion_tokens": 10, "pool_peak_rss_bytes": GIB})
    report = summarize(results, ["a", "b"])
    result = recommend.recommend(report["summary"], report["paired"], Limits())
    assert result["choice"]["run"] == "a" and result["within_noise"] == []
    assert [r["run"] for r in result["pareto_front"]] == ["a", "b"]


@pytest.mark.parametrize("text, expected", [("2GB", 2 * GIB), ("1.5g", int(1.5 * GIB)),
                                            ("512MiB", 512 * 2**20), ("800m", 800 * 2**20),
                                            ("4096", 4096)])
def test_memory_sizes(text, expected):
    assert parse_memory(text) == expected


@pytest.mark.parametrize("text, expected", [("5s", 5.0), ("5", 5.0), ("800ms", 0.8),
                                            ("2m", 120.0)])
def test_latencies(text, expected):
    assert parse_latency(text) == pytest.approx(expected)


@pytest.mark.parametrize("parse, text", [(parse_memory, "lots"), (parse_memory, "2 parsecs"),
                                         (parse_latency, "soon"), (parse_latency, "-1s")])
def test_bad_limits_are_one_line_usage_errors(parse, text):
    with pytest.raises(UsageError, match=text):
        parse(text)


def test_without_references_it_ranks_by_groundedness_and_says_so():
    def unreferenced(model, grounded, latency, peak):
        return {"model": model, "cosine_mean": None, "groundedness_mean": grounded,
                "groundedness_ci95": None, "latency_p50_s": latency, "peak_rss_bytes": peak}

    runs = [unreferenced("big", 0.9, 9.0, 6 * GIB), unreferenced("small", 0.86, 1.0, 1 * GIB)]
    paired = [{"model_a": "big", "model_b": "small", "questions": 0, "cosine_diff_mean": None,
               "cosine_diff_ci95": None, "groundedness_diff_mean": 0.04,
               "groundedness_diff_ci95": [-0.02, 0.1]}]
    result = recommend.recommend(runs, paired, Limits(max_memory_bytes=8 * GIB))
    assert result["metric"] == "groundedness" and result["unscored"] == []
    assert result["choice"]["run"] == "big"
    assert result["choice"]["groundedness_mean"] == 0.9
    assert result["within_noise"][0]["run"] == "small"
    text = "\n".join(recommend.lines(result))
    assert text.startswith("Ranked by groundedness: the answers have no reference answers")
    assert "groundedness 0.900" in text and "big - small groundedness +0.040" in text
    # a cosine floor cannot be met without references: said, not ignored
    floor = recommend.recommend(runs, paired, Limits(min_cosine=0.5))
    assert floor["choice"] is None
    assert floor["excluded"]["big"] == ["no cosine (no reference answers)"]


def test_paired_differences_carry_groundedness_where_cosine_is_missing():
    results = [{"model": m, "question_id": q, "cosine": None, "groundedness": g,
                "response_s": 1.0, "ttft_s": 0.5, "generation_s": 0.5, "completion_tokens": 5,
                "error": None}
               for m, scores in (("a", (1.0, 0.5)), ("b", (0.5, 0.5)))
               for q, g in zip(("q1", "q2"), scores)]
    out = summarize(results, ["a", "b"])
    (pair,) = out["paired"]
    assert pair["questions"] == 0 and pair["cosine_diff_mean"] is None
    assert pair["groundedness_questions"] == 2
    assert pair["groundedness_diff_mean"] == pytest.approx(0.25)
    assert out["summary"][0]["groundedness_mean"] == pytest.approx(0.75)
