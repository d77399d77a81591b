"""A self-contained HTML report of a batch: summary table, the study's treemap of accuracy per
question per model, latency distributions, accuracy against latency, and the slowest and
worst-scored answers with their references and pages. Charts are Plotly, whose JavaScript is
inlined, so the file opens without a network."""

from __future__ import annotations

import html
from datetime import UTC, datetime

import plotly.graph_objects as go
from plotly.io import to_html

from shared.report import exports, recommend
from shared.report.stats import LOW_COSINE

WORST_AND_SLOWEST = 5


def _chart(figure: go.Figure, div_id: str, first: bool) -> str:
    figure.update_layout(margin={"l": 50, "r": 20, "t": 50, "b": 40}, template="plotly_white")
    # plotly.js inlined once, in the first chart; the others reuse it
    return to_html(figure, full_html=False, include_plotlyjs=True if first else False,
                   div_id=div_id, config={"displaylogo": False, "responsive": True})


def treemap(report: dict) -> go.Figure:
    """The study's chart: one tile per question per model, sized by question, coloured by cosine."""
    rows = [r for r in report["results"] if r.get("cosine") is not None]
    ids, labels, parents, values, colors, hover = [], [], [], [], [], []
    for model in report["batch"]["models"]:
        mine = [r for r in rows if r["model"] == model]
        if not mine:
            continue
        ids.append(model)
        labels.append(model)
        parents.append("")
        values.append(len(mine))
        colors.append(sum(r["cosine"] for r in mine) / len(mine))
        hover.append(f"{model}: mean cosine {colors[-1]:.3f}")
        for r in mine:
            ids.append(f"{model}/{r['question_id']}")
            labels.append(f"{r['question_id']}<br>{r['cosine']:.2f}")
            parents.append(model)
            values.append(1)
            colors.append(r["cosine"])
            hover.append(html.escape(r["question"][:120]))
    figure = go.Figure(go.Treemap(
        ids=ids, labels=labels, parents=parents, values=values, branchvalues="total",
        marker={"colors": colors, "colorscale": "RdYlGn", "cmin": 0, "cmax": 1,
                "colorbar": {"title": "cosine"}},
        hovertext=hover, hoverinfo="text"))
    figure.update_layout(title="Accuracy per question per model (cosine with the reference)",
                         height=520)
    return figure


def latency_box(report: dict) -> go.Figure:
    figure = go.Figure()
    for model in report["batch"]["models"]:
        values = [r["response_s"] for r in report["results"]
                  if r["model"] == model and r.get("error") is None and not r.get("cancelled")]
        figure.add_trace(go.Box(y=values, name=model, boxpoints="all", jitter=0.4))
    figure.update_layout(title="Response time per question (seconds)", yaxis_title="seconds",
                         height=420, showlegend=False)
    return figure


def _accuracy_against(report: dict, x_of, title: str, x_title: str) -> go.Figure:
    """Mean accuracy (cosine, or groundedness without references; with its 95% interval) of
    each model against one of its costs."""
    metric = recommend.accuracy_metric(report["summary"])
    mean, ci = f"{metric}_mean", f"{metric}_ci95"
    summary = [s for s in report["summary"] if s.get(mean) is not None and x_of(s)]
    errors = [((s.get(ci) or [s[mean]] * 2)[1] - s[mean]) for s in summary]
    figure = go.Figure(go.Scatter(
        x=[x_of(s) for s in summary], y=[s[mean] for s in summary],
        mode="markers+text", text=[s["model"] for s in summary], textposition="top center",
        marker={"size": 16}, error_y={"type": "data", "array": errors, "visible": True}))
    figure.update_layout(title=title.replace("mean cosine", f"mean {metric}"),
                         xaxis_title=x_title, yaxis_title=f"mean {metric}", height=420)
    return figure


def accuracy_vs_latency(report: dict) -> go.Figure:
    return _accuracy_against(report, lambda s: s["latency_p50_s"],
                             "Which model is worth its time: mean cosine against median latency",
                             "median response time (s)")


def accuracy_vs_memory(report: dict) -> go.Figure:
    return _accuracy_against(
        report, lambda s: s.get("peak_rss_bytes") and s["peak_rss_bytes"] / 2**20,
        "Which model fits the machine: mean cosine against the pool's peak memory",
        "peak resident memory of the pool (MiB)")


def _recommendation(report: dict) -> str:
    """The answer the user came for, first: which model to run, and the Pareto front."""
    advice = report.get("recommendation") or recommend.recommend(
        report["summary"], report["paired"], recommend.Limits())
    sentences = "".join(f"<p>{html.escape(line)}</p>" for line in recommend.lines(advice))
    metric = advice.get("metric", "cosine")
    mean, ci = f"{metric}_mean", f"{metric}_ci95"
    head = "".join(f"<th>{h}</th>" for h in ("model", f"{metric} mean", "95% CI",
                                             "median latency", "memory"))
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in (
            r["run"], f"{r[mean]:.3f}",
            f"{r[ci][0]:.3f}-{r[ci][1]:.3f}" if r[ci] else "-",
            f"{r['latency_p50_s']:.2f} s" if r["latency_p50_s"] is not None else "-",
            exports.mib(r["memory_bytes"]) + (" (est.)" if r["memory_estimated"] else "")))
        + "</tr>" for r in advice["pareto_front"])
    return (f'<section id="recommendation"><h2>Which model to run</h2>{sentences}'
            f'<table class="pareto"><caption>Pareto front: accuracy, latency, memory</caption>'
            f"<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></section>")


def _summary_table(report: dict) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in exports.SUMMARY_HEADERS)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in exports.summary_rows(report))
    lines = (exports.paired_lines(report) + exports.retrieval_lines(report)
             + exports.repeat_lines(report))
    pairs = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    return (f'<table class="summary"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
            + (f"<ul>{pairs}</ul>" if pairs else ""))


def _settings_table(report: dict) -> str:
    """Each model's file and memory, and how it was asked (prompt template, sampling), as its
    answers recorded them."""
    names = ("temperature", "top_p", "top_k", "repeat_penalty", "repeat_last_n", "seed")
    rows = "".join(
        f"<tr><td>{html.escape(s['model'])}</td>"
        f"<td>{html.escape(s.get('quantization') or '-')}</td>"
        f"<td>{exports.mib(s.get('model_size'))}</td>"
        f"<td>{exports.mib(s.get('peak_rss_bytes'))}</td>"
        f"<td>{'-' if s.get('load_s') is None else format(s['load_s'], '.1f') + ' s'}</td>"
        f"<td>{html.escape(s.get('prompt') or '-')}</td>"
        + "".join(f"<td>{(s.get('sampling') or {}).get(n, '-')}</td>" for n in names)
        + f"<td>{'-'.join(str(v) for v in s.get('max_tokens_range') or ['-'])}</td></tr>"
        for s in report["summary"])
    head = "".join(f"<th>{h}</th>" for h in ("model", "quantization", "file", "peak memory",
                                             "load", "prompt", *names, "max new tokens"))
    return (f"<h2>Models and settings</h2><table class='settings'><thead><tr>{head}</tr></thead>"
            f"<tbody>{rows}</tbody></table>")


def _low_scores_table(report: dict) -> str:
    """Why answers scored low: the cited page was not retrieved, or the model missed it."""
    rows = "".join(
        f"<tr><td>{html.escape(s['model'])}</td>"
        + "".join(f"<td>{(s.get('low_scores') or {}).get(k, 0)}</td>"
                  for k in ("retrieval_missed", "model_missed", "unknown")) + "</tr>"
        for s in report["summary"])
    return (f"<h2>Answers scored below {LOW_COSINE}</h2><table class='low'><thead><tr>"
            "<th>model</th><th>retrieval missed (cited page not in the contexts)</th>"
            "<th>model missed (cited page in the contexts)</th><th>no cited page</th></tr>"
            f"</thead><tbody>{rows}</tbody></table>")


def _cause(r: dict) -> str:
    match = r.get("retrieval")
    if not match:
        return "-"
    return f"cited page at rank {match['rank']}" if match["rank"] else "cited page not retrieved"


def _cosine_text(r: dict) -> str:
    return "-" if r.get("cosine") is None else f"{r['cosine']:.3f}"


def _answers_table(title: str, rows: list[dict]) -> str:
    cells = "".join(
        "<tr>"
        f"<td>{html.escape(r['model'])}</td><td>{html.escape(r['question'])}</td>"
        f"<td>{html.escape(r.get('answer') or '')}</td>"
        f"<td>{html.escape(r.get('reference') or '-')}</td>"
        f"<td>{_cosine_text(r)}</td><td>{html.escape(_cause(r))}</td>"
        f"<td>{r.get('response_s', 0):.2f} s</td>"
        f"<td>{html.escape(', '.join(p.split('#page=')[-1] for p in r.get('pages') or []))}</td>"
        "</tr>" for r in rows)
    return (f"<h2>{html.escape(title)}</h2><table class='answers'><thead><tr><th>model</th>"
            "<th>question</th><th>answer</th><th>reference</th><th>cosine</th><th>retrieval</th>"
            "<th>time</th>"
            f"<th>pages</th></tr></thead><tbody>{cells}</tbody></table>")


def render(report: dict) -> str:
    batch = report["batch"]
    answered = [r for r in report["results"]
                if r.get("error") is None and not r.get("cancelled")]
    slowest = sorted(answered, key=lambda r: -r["response_s"])[:WORST_AND_SLOWEST]
    worst = sorted([r for r in answered if r.get("cosine") is not None],
                   key=lambda r: r["cosine"])[:WORST_AND_SLOWEST]
    charts = [
        _chart(treemap(report), "chart-treemap", first=True),
        _chart(latency_box(report), "chart-latency", first=False),
        _chart(accuracy_vs_latency(report), "chart-tradeoff", first=False),
        _chart(accuracy_vs_memory(report), "chart-memory", first=False),
    ]
    created = datetime.fromtimestamp(batch["created_at"], UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>ragfleet batch {html.escape(batch['id'])}</title>
<style>
 body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; color: #222; }}
 table {{ border-collapse: collapse; width: 100%; margin: 1rem 0; font-size: 0.9rem; }}
 th, td {{ border: 1px solid #ddd; padding: 0.35rem 0.5rem; text-align: left; vertical-align: top; }}
 th {{ background: #f4f4f4; }} .answers td {{ max-width: 28rem; }}
 .meta {{ color: #555; }}
</style></head><body>
<h1>ragfleet batch {html.escape(batch['id'])}</h1>
<p class="meta">Collection <b>{html.escape(batch['collection'])}</b> version {batch['version']},
{batch['questions']} questions, models {html.escape(', '.join(batch['models']))};
status {html.escape(batch['status'])}; created {created}.
{html.escape(exports.contexts_said(batch['params']))};
{html.escape(exports.prompts_said(batch['params']))}; BM25 weight {batch['params']['bm25_weight']}.</p>
{_recommendation(report)}
<h2>Summary</h2>
{_summary_table(report)}
{_settings_table(report)}
{_low_scores_table(report)}
{''.join(charts)}
{_answers_table('Worst-scored answers', worst)}
{_answers_table('Slowest answers', slowest)}
</body></html>
"""
