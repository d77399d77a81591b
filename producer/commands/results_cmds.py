"""Results of a batch: `ragfleet results` (summary and exports) and `ragfleet report` (HTML)."""

from __future__ import annotations

from pathlib import Path

import click

from producer.output import batch_summary, info, write_file
from producer.session import connect
from shared.report import collect, exports, gates


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
def results(batch_id, fmt, output, under, over):
    """Per-model accuracy and speed of a batch, and every answer; with gates, a CI check."""
    checks = ([gates.parse(s, lower_is_better=False) for s in under]
              + [gates.parse(s, lower_is_better=True) for s in over])
    report = collect.build(connect().client, batch_id)
    if fmt == "table":
        text = batch_summary(report)
    else:
        text = {"json": exports.to_json, "csv": exports.to_csv, "md": exports.to_markdown,
                "seed": exports.to_seed}[fmt](report)
    if output:
        write_file(output, text)
        info(f"wrote {output}")
    else:
        click.echo(text, nl=not text.endswith("\n"))
    gates.check(report, checks)  # after the figures: a failed gate shows what it judged


@click.command()
@click.argument("batch_id", metavar="BATCH")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="The HTML file (default: report-BATCH.html).")
def report(batch_id, output):
    """A self-contained HTML report with charts (opens without a network)."""
    from shared.report import html as report_html  # Plotly is heavy: loaded only here

    data = collect.build(connect().client, batch_id)
    output = output or Path(f"report-{batch_id}.html")
    write_file(output, report_html.render(data))
    click.echo(str(output))


COMMANDS = (results, report)
