"""`ragfleet compare B1 B2 ...`: runs of several batches side by side, paired over their
common questions."""

from __future__ import annotations

import html
import json
from pathlib import Path

import click

from producer.commands.results_cmds import NoModelFits, parse_limits, recommend_options
from producer.output import emit_json, json_option, table, write_file
from producer.session import connect
from shared.report import collect, compare, exports, recommend


@click.command("compare")
@click.argument("batch_ids", nargs=-1, required=True, metavar="BATCH...")
@click.option("--html", "html_out", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Also write an HTML page of the comparison.")
@recommend_options
@json_option
def compare_cmd(batch_ids, html_out, wanted, max_memory, max_latency, min_cosine, as_json):
    """Compare batches (other models, days, machines, settings) on the questions all answered.
    With --recommend: which run to choose within the given limits."""
    limits = parse_limits(max_memory, max_latency, min_cosine)
    client = connect().client
    result = compare.build([collect.build(client, b) for b in batch_ids])
    if wanted or limits != recommend.Limits():
        result["recommendation"] = recommend.recommend(result["summary"], result["paired"],
                                                       limits, label="run")
    if html_out:
        write_file(html_out, _page(result))
    if as_json:
        emit_json(result)
        _fail_without_choice(result)
        return
    click.echo(f"{len(result['summary'])} runs over the {result['questions']} questions "
               f"every run answered with a {result.get('metric', 'cosine')} score")
    click.echo(table(HEADERS, _rows(result)))
    for line in exports.paired_lines(result):
        click.echo(line)
    for line in recommend.lines(result["recommendation"]) if "recommendation" in result else ():
        click.echo(line)
    _fail_without_choice(result)


def _fail_without_choice(result: dict) -> None:
    advice = result.get("recommendation")
    if advice and advice["choice"] is None:
        raise NoModelFits(f"no run meets the limits ({advice['limits']})")


HEADERS = ("RUN", "PROMPT", "COSINE MEAN", "95% CI", "MEDIAN", "GROUNDED", "LATENCY P50",
           "TOKENS/S", "NEW TOK", "CUT", "PEAK MEM")


def _rows(result: dict) -> list[tuple]:
    return [(s["run"], s.get("prompt") or "-", exports.number(s["cosine_mean"]), exports.interval(s),
             exports.number(s["cosine_median"]), exports.number(s.get("groundedness_mean"), 2),
             exports.number(s["latency_p50_s"], 2) + " s", exports.number(s["tokens_per_s"], 1),
             exports.number(s.get("completion_tokens_mean"), 0), exports.cut_cell(s),
             exports.mib(s.get("peak_rss_bytes")))
            for s in result["summary"]]


def _page(result: dict) -> str:
    head = "".join(f"<th>{html.escape(h.lower())}</th>" for h in HEADERS)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in _rows(result))
    pairs = "".join(f"<li>{html.escape(line)}</li>" for line in exports.paired_lines(result))
    advice = "".join(f"<p>{html.escape(line)}</p>" for line in
                     recommend.lines(result["recommendation"])) if "recommendation" in result else ""
    data = html.escape(json.dumps(result))
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>ragfleet compare"
            f"</title></head><body><h1>ragfleet compare</h1>{advice}<p>{len(result['summary'])} runs "
            f"over the {result['questions']} questions every run answered.</p><table border='1'>"
            f"<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table><ul>{pairs}</ul>"
            f"<script type='application/json' id='data'>{data}</script></body></html>")


COMMANDS = (compare_cmd,)
