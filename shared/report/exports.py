"""Batch results as tables and files: table, json, csv, md and the study's `seed` rows."""

from __future__ import annotations

import csv
import io
import json

RESULT_COLUMNS = ("question_id", "model", "question", "reference", "answer", "cosine",
                  "groundedness", "answer_relevance", "context_relevance",
                  "checks_passed", "checks", "judge",
                  "retrieval_s", "queue_s", "prompt_s", "ttft_s", "generation_s", "response_s",
                  "total_s", "prompt_tokens", "completion_tokens", "max_tokens", "finish_reason",
                  "tokens_per_s",
                  "pages", "retrieval_rank", "prompt", "worker", "model_file", "quantization",
                  "load_s", "pool_peak_rss_bytes", "error")
FORMATS = ("table", "json", "csv", "md", "seed")


def number(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def interval(summary: dict) -> str:
    ci = summary.get("cosine_ci95")
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "-"


def checks_cell(summary: dict) -> str:
    """Share of checked answers passing every check, with the counts: "0.75 (3/4)"."""
    rate, checked = summary.get("checks_pass_rate"), summary.get("checked") or 0
    if rate is None:
        return "-"
    return f"{rate:.2f} ({round(rate * checked)}/{checked})"


def checks_text(checks: dict | None) -> str | None:
    """A result's checks in one cell: "contains:pass regex:fail"."""
    if not checks:
        return None
    return " ".join(f"{name}:{'pass' if ok else 'fail'}" for name, ok in checks.items())


def judge_cell(summary: dict) -> str:
    """Each judge's mean grade (1-5) with the judging model: "3.50 by smollm2-135m"."""
    means = [f"{number(j['judge_mean'], 2)} by {j['judge_model']}"
             for j in summary.get("judges") or []]
    return "; ".join(means) or "-"


def judge_text(judged: dict | None) -> str | None:
    """A result's grades in one cell: "smollm2-135m:4 gemma3-270m:-" (- for no grade)."""
    if not judged:
        return None
    return " ".join(f"{judge}:{'-' if j.get('grade') is None else j['grade']}"
                    for judge, j in judged.items())


SUMMARY_HEADERS = ("MODEL", "ANSWERED", "FAILED", "COSINE MEAN", "95% CI", "MEDIAN",
                   "GROUNDED", "ANS REL", "CTX REL", "CHECKS",
                   "JUDGE", "LATENCY P50", "P95", "TTFT P50", "TOKENS/S", "SPEEDUP",
                   "PROMPT TOK", "NEW TOK", "CUT", "QUANT", "PEAK MEM")


def summary_rows(report: dict) -> list[tuple]:
    return [(s["model"], s["answered"], s["failed"], number(s["cosine_mean"]), interval(s),
             number(s["cosine_median"]), number(s.get("groundedness_mean"), 2),
             number(s.get("answer_relevance_mean"), 2),
             number(s.get("context_relevance_mean"), 2), checks_cell(s), judge_cell(s),
             number(s["latency_p50_s"], 2) + " s",
             number(s["latency_p95_s"], 2) + " s", number(s["ttft_p50_s"], 2) + " s",
             number(s["tokens_per_s"], 1), number(s["speedup_vs_slowest"], 2) + "x",
             number(s.get("prompt_tokens_mean"), 0), number(s.get("completion_tokens_mean"), 0),
             cut_cell(s), s.get("quantization") or "-", mib(s.get("peak_rss_bytes")))
            for s in report["summary"]]


def cut_cell(summary: dict) -> str:
    """Answers stopped by the cap on new tokens (finish reason "length"), of those answered."""
    return "-" if summary.get("cut") is None else f"{summary['cut']}/{summary['answered']}"


def mib(size: int | None) -> str:
    return "-" if not size else f"{size / 2**20:.0f} MiB"


def contexts_said(params: dict) -> str:
    """How many contexts a batch gave its models: one top-k, or each model its own."""
    per_model = params.get("contexts_per_model")
    if not per_model:
        return f"top-k {params['top_k']}"
    return "contexts per question " + ", ".join(f"{m} {n}" for m, n in per_model.items())


def prompts_said(params: dict) -> str:
    """Which prompt template a batch's models answered with: one, or some models their own."""
    said = f"prompt {(params.get('prompt') or {}).get('name', '-')}"
    own = params.get("prompts_per_model") or {}
    if own:
        said += " (" + ", ".join(f"{m}: {t['name']}" for m, t in own.items()) + ")"
    return said


def retrieval_lines(report: dict) -> list[str]:
    """The batch's retrieval, where references cite pages: hit rate at k and MRR."""
    metrics = report.get("retrieval") or {}
    if not metrics.get("questions"):
        return []
    found = round(metrics["hit_rate"] * metrics["questions"])
    return [f"retrieval: a cited page in the top {metrics['k']} for {found} of "
            f"{metrics['questions']} questions (hit rate {metrics['hit_rate']:.2f}), "
            f"MRR {metrics['mrr']:.3f}"]


def repeat_lines(report: dict) -> list[str]:
    """With `ask --repeat N`: how much one model's score moves between answers to the same
    question (mean over questions of the standard deviation across repeats)."""
    batch = report["batch"]
    spreads = [(s["model"], s.get("cosine_spread")) for s in report["summary"]]
    if (batch.get("repeat") or 1) < 2 or not any(v is not None for _, v in spreads):
        return []
    return [f"spread over {batch['repeat']} repeats (cosine std per question, mean): "
            + ", ".join(f"{m} {number(v)}" for m, v in spreads)]


def paired_lines(report: dict) -> list[str]:
    lines = []
    for p in report["paired"]:
        if p["cosine_diff_mean"] is None:
            continue
        ci = p["cosine_diff_ci95"]
        ci_text = f", 95% CI [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else ""
        lines.append(f"{p['model_a']} - {p['model_b']}: cosine {p['cosine_diff_mean']:+.3f} "
                     f"over {p['questions']} questions{ci_text}")
    return lines


def to_json(report: dict) -> str:
    return json.dumps(report, indent=2)


# A spreadsheet runs a cell starting with one of these as a formula (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value):
    """Text that a spreadsheet would run as a formula, quoted as OWASP advises; numbers (which
    are not text here) stay numbers."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def to_csv(report: dict) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=RESULT_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in report["results"]:
        row = {**row, "pages": " ".join(row.get("pages") or []),
               "retrieval_rank": (row.get("retrieval") or {}).get("rank"),
               "checks": checks_text(row.get("checks")),
               "judge": judge_text(row.get("judgements"))}
        writer.writerow({k: safe_cell(v) for k, v in row.items()})
    return out.getvalue()


def to_markdown(report: dict) -> str:
    header = "| " + " | ".join(SUMMARY_HEADERS) + " |"
    rule = "|" + "|".join("---" for _ in SUMMARY_HEADERS) + "|"
    rows = ["| " + " | ".join(str(c) for c in row) + " |" for row in summary_rows(report)]
    batch = report["batch"]
    lines = [f"# Batch {batch['id']}", "",
             f"Collection `{batch['collection']}` version {batch['version']}, "
             f"{batch['questions']} questions, status {batch['status']}.", "",
             header, rule, *rows, "", *retrieval_lines(report), *repeat_lines(report)]
    paired = paired_lines(report)
    if paired:
        lines += ["", "Paired differences:", ""] + [f"- {line}" for line in paired]
    return "\n".join(lines) + "\n"


def to_seed(report: dict) -> str:
    """The study's rows: model;question;cosine;resp_time."""
    lines = ["model;question;cosine;resp_time"]
    for r in report["results"]:
        if r.get("error") is not None or r.get("cancelled"):
            continue
        question = safe_cell(" ".join(r["question"].split()).replace(";", ","))
        cosine = "" if r["cosine"] is None else f"{r['cosine']:.4f}"
        lines.append(f"{safe_cell(r['model'])};{question};{cosine};{r['response_s']:.3f}")
    return "\n".join(lines) + "\n"
