"""Batch commands: ask, batches, watch, cancel, results."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from broker import connection
from broker.app import sender
from producer import batch_client
from producer.output import emit_json, info, table
from shared import batch_results, batch_store, exports
from shared.catalog import load_catalog
from shared.config import load_settings
from shared.errors import RagfleetError, UsageError


def _connect():
    settings = load_settings()
    url, _ = connection.connect(settings)
    return settings, url, connection.client(url, timeout_s=30, patient=True)


@click.command()
@click.argument("questions", type=click.Path(path_type=Path), required=False)
@click.option("--collection", "-c", help="The collection to answer from.")
@click.option("--model", "-m", "models", multiple=True, metavar="NAME",
              help="A model to ask (repeatable).")
@click.option("--top-k", type=click.IntRange(1, 50), default=4, show_default=True,
              help="Contexts per question after fusion.")
@click.option("--bm25-weight", type=click.FloatRange(0, 1), default=0.3, show_default=True,
              help="Weight of BM25 in the fusion (FAISS gets the rest).")
@click.option("--max-tokens", type=click.IntRange(min=1), default=None,
              help="New tokens per answer (default: the model's catalog setting).")
@click.option("--temperature", type=click.FloatRange(min=0), default=None,
              help="Sampling temperature (default: the model's, 0.01 as in the study).")
@click.option("--queue-anyway", is_flag=True, help="Queue work for models with no running pool.")
@click.option("--resume", "resume_id", metavar="BATCH",
              help="Run again only what is missing or failed in BATCH.")
@click.option("--wait/--no-wait", default=None,
              help="Wait until the batch finishes (default: when stdout is a terminal).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
def ask(questions, collection, models, top_k, bm25_weight, max_tokens, temperature, queue_anyway,
        resume_id, wait, as_json):
    """Ask every question of QUESTIONS (CSV or JSONL) to every --model, from one collection."""
    settings, url, client = _connect()
    app = sender(url, settings)
    if resume_id:
        rerun = batch_client.resume(app, client, resume_id)
        batch_id = resume_id
        info(f"batch {batch_id}: {rerun} (question, model) pairs queued again")
    else:
        if questions is None or not collection:
            raise UsageError("give QUESTIONS and --collection (or --resume BATCH)")
        params = {"top_k": top_k, "bm25_weight": bm25_weight, "max_tokens": max_tokens,
                  "temperature": temperature}
        batch_id, without_pool = batch_client.submit(
            app, client, load_catalog(settings.catalog_path), questions, collection,
            list(models), params, queue_anyway)
        if without_pool:
            info(f"warning: queued for {', '.join(without_pool)} with no running pool")
    if wait is None:
        wait = sys.stdout.isatty()
    if wait:
        batch = batch_client.wait(client, batch_id, on_progress=_progress(sys.stderr.isatty()))
    else:
        batch = batch_store.get(client, batch_id)
    if as_json:
        emit_json({"batch": batch_id, "status": batch["status"], "total": batch["total"],
                   "completed": batch["completed"], "failed": batch["failed"],
                   "cancelled": batch["cancelled"], "models": batch["models"]})
    else:
        click.echo(batch_id)


def _progress(enabled: bool):
    """A bar per model, redrawn in place on a terminal; nothing for scripts and logs."""
    drawn = {"lines": 0}

    def show(batch: dict) -> None:
        if not enabled:
            return
        per_question = batch["total"] // max(1, len(batch["models"]))
        lines = []
        for model, counts in batch["per_model"].items():
            done = sum(counts.values())
            filled = int(30 * done / max(1, per_question))
            lines.append(f"  {model:<22} [{'#' * filled}{'-' * (30 - filled)}] {done}/{per_question}"
                         + (f" ({counts['failed']} failed)" if counts["failed"] else ""))
        lines.append(f"  batch {batch['id']}: {batch['status']}")
        if drawn["lines"]:
            click.echo(f"\x1b[{drawn['lines']}F", err=True, nl=False)
        click.echo("\n".join(f"{line}\x1b[K" for line in lines), err=True)
        drawn["lines"] = len(lines)

    return show


@click.command()
@click.argument("batch_id", metavar="BATCH")
@click.option("--json", "as_json", is_flag=True, help="Print the final batch as JSON.")
def watch(batch_id, as_json):
    """Live progress per model; returns when the batch is finished."""
    _, _, client = _connect()
    batch = batch_client.wait(client, batch_id, on_progress=_progress(sys.stderr.isatty()))
    if as_json:
        emit_json(batch)
    else:
        click.echo(f"{batch_id}: {batch['status']} ({batch['completed']} completed, "
                   f"{batch['failed']} failed, {batch['cancelled']} cancelled of {batch['total']})")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
def batches(as_json):
    """Recent batches with their status and counters."""
    _, _, client = _connect()
    found = batch_store.list_batches(client)
    if as_json:
        emit_json({"batches": found})
        return
    click.echo(table(("BATCH", "STATUS", "COLLECTION", "MODELS", "DONE", "FAILED", "TOTAL"),
                     [(b["id"], b["status"], f"{b['collection']} v{b['version']}",
                       ",".join(b["models"]), b["completed"], b["failed"], b["total"])
                      for b in found]))


@click.command()
@click.argument("batch_id", metavar="BATCH")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
def cancel(batch_id, as_json):
    """Stop the queued work of a batch; finished results are kept."""
    _, _, client = _connect()
    state = batch_store.cancel(client, batch_id)
    if as_json:
        emit_json({"batch": batch_id, "status": state})
    else:
        click.echo(f"{batch_id}: {state}")


@click.command()
@click.argument("batch_id", metavar="BATCH")
@click.option("--format", "fmt", type=click.Choice(exports.FORMATS), default="table",
              show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to this file instead of stdout.")
def results(batch_id, fmt, output):
    """Per-model accuracy and speed of a batch, and every answer."""
    _, _, client = _connect()
    report = batch_results.build(client, batch_id)
    if fmt == "table":
        text = _table(report)
    else:
        text = {"json": exports.to_json, "csv": exports.to_csv, "md": exports.to_markdown,
                "seed": exports.to_seed}[fmt](report)
    if output:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise RagfleetError(f"cannot write {output}: {exc.strerror}") from None
        info(f"wrote {output}")
    else:
        click.echo(text, nl=not text.endswith("\n"))


def _table(report: dict) -> str:
    batch = report["batch"]
    head = (f"batch {batch['id']}: {batch['status']}, collection {batch['collection']} "
            f"v{batch['version']}, {batch['questions']} questions")
    body = table(exports.SUMMARY_HEADERS, exports.summary_rows(report))
    return "\n".join([head, body, *exports.paired_lines(report)])


COMMANDS = (ask, batches, watch, cancel, results)


@click.command()
@click.option("--questions", "n_questions", type=click.IntRange(1, 28), default=8,
              show_default=True, help="How many of the 28 Standard-plan questions to ask.")
@click.option("--max-tokens", type=click.IntRange(8, 1024), default=96, show_default=True)
@click.option("--top-k", type=click.IntRange(1, 10), default=3, show_default=True)
def demo(n_questions, max_tokens, top_k):
    """The study end to end: the bundled Northwind PDF, SmolLM2 135M against Gemma 3 270M."""
    from producer import demo as demo_run

    settings = load_settings()
    report, out = demo_run.run(settings, load_catalog(settings.catalog_path), n_questions,
                               max_tokens, top_k, say=info,
                               on_batch_progress=_progress(sys.stderr.isatty()))
    click.echo(_table(report))
    click.echo(f"\nfull results: {out}/ (report.html, results.json, .csv, .md, seed.csv)")
    click.echo(f"more: ragfleet results {report['batch']['id']} --format json; "
               "stop the fleet: ragfleet down")


COMMANDS = (*COMMANDS, demo)


@click.command()
@click.argument("batch_id", metavar="BATCH")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="The HTML file (default: report-BATCH.html).")
def report(batch_id, output):
    """A self-contained HTML report with charts (opens without a network)."""
    from shared import report_html

    _, _, client = _connect()
    data = batch_results.build(client, batch_id)
    output = output or Path(f"report-{batch_id}.html")
    try:
        output.write_text(report_html.render(data), encoding="utf-8")
    except OSError as exc:
        raise RagfleetError(f"cannot write {output}: {exc.strerror}") from None
    click.echo(str(output))


COMMANDS = (*COMMANDS, report)
