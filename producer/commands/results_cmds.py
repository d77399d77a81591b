"""Results of a batch: `ragfleet results` (summary and exports) and `ragfleet report` (HTML)."""

from __future__ import annotations

from pathlib import Path

import click

from producer.output import batch_summary, info, write_file
from producer.session import connect
from shared.errors import RagfleetError
from shared.report import collect, exports, gates, recommend


class NoModelFits(RagfleetError):
    """--recommend found no model within the limits: a CI job guarding a choice fails."""


def limit_options(command):
    """The limits of a recommendation, shared by `results`, `compare` and `report`."""
    for option in reversed((
        click.option("--max-memory", metavar="SIZE",
                     help="The pool's peak memory at most this (2GB, 512MB)."),
        click.option("--max-latency", metavar="TIME",
                     help="Median answer time at most this (5s, 800ms)."),
        click.option("--min-cosine", type=float, metavar="X",
                     help="Mean cosine at least this."),
    )):
        command = option(command)
    return command


def recommend_options(command):
    """--recommend and its limits."""
    return click.option(
        "--recommend", "wanted", is_flag=True,
        help="Name the model to run: the best accuracy within the limits below, and the "
             "Pareto front of accuracy, latency and memory.")(limit_options(command))


def parse_limits(max_memory, max_latency, min_cosine) -> recommend.Limits:
    return recommend.Limits(
        max_memory_bytes=recommend.parse_memory(max_memory) if max_memory else None,
        max_latency_s=recommend.parse_latency(max_latency) if max_latency else None,
        min_cosine=min_cosine)


@click.command()
@click.argument("batch_id", metavar="BATCH")
@click.option("--format", "fmt", type=click.Choice(exports.FORMATS), default="table",
              show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to this file instead of stdout.")
@click.option("--fail-under", "under", multiple=True, metavar="METRIC=VALUE",
              help="Exit 1 when a model (or the batch's retrieval) is below it: "
                   f"{', '.join(gates.HIGHER_IS_BETTER)}. Repeatable.")
@click.option("--fail-over", "over", multiple=True, metavar="METRIC=VALUE",
              help=f"Exit 1 when a model is above it: {', '.join(gates.LOWER_IS_BETTER)}.")
@recommend_options
def results(batch_id, fmt, output, under, over, wanted, max_memory, max_latency, min_cosine):
    """Per-model accuracy and speed of a batch, and every answer; with gates, a CI check.
    With --recommend: which model to run within the given limits."""
    checks = ([gates.parse(s, lower_is_better=False) for s in under]
              + [gates.parse(s, lower_is_better=True) for s in over])
    limits = parse_limits(max_memory, max_latency, min_cosine)
    report = collect.build(connect().client, batch_id)
    advice = None
    if wanted or limits != recommend.Limits():
        advice = recommend.recommend(report["summary"], report["paired"], limits)
        report = {**report, "recommendation": advice}
    if fmt == "table":
        text = batch_summary(report)
        if advice:
            text += "\n" + "\n".join(recommend.lines(advice))
    else:
        text = {"json": exports.to_json, "csv": exports.to_csv, "md": exports.to_markdown,
                "seed": exports.to_seed}[fmt](report)
    if output:
        write_file(output, text)
        info(f"wrote {output}")
    else:
        click.echo(text, nl=not text.endswith("\n"))
    gates.check(report, checks)  # after the figures: a failed gate shows what it judged
    if advice and advice["choice"] is None:
        raise NoModelFits(f"no model meets the limits ({advice['limits']})")


@click.command()
@click.argument("batch_id", metavar="BATCH")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="The HTML file (default: report-BATCH.html).")
@limit_options
def report(batch_id, output, max_memory, max_latency, min_cosine):
    """A self-contained HTML report with charts (opens without a network); it opens with the
    model to run within the limits given (none: the most accurate) and the Pareto front."""
    from shared.report import html as report_html  # Plotly is heavy: loaded only here

    limits = parse_limits(max_memory, max_latency, min_cosine)
    data = collect.build(connect().client, batch_id)
    data["recommendation"] = recommend.recommend(data["summary"], data["paired"], limits)
    output = output or Path(f"report-{batch_id}.html")
    write_file(output, report_html.render(data))
    click.echo(str(output))


COMMANDS = (results, report)
