"""Batch commands: ask, batches (and batches delete), watch, cancel."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from producer import batch_client
from producer.output import batch_progress, emit_json, info, json_option, table
from producer.session import connect
from shared.errors import UsageError
from shared.llm.catalog import load_fleet_catalog
from shared.llm.requests import SamplingOverrides
from shared.state import batch_store, judgements

# Waiting gives up after this long with exit 1 and one line; the batch goes on.
timeout_option = click.option("--timeout", type=click.IntRange(min=1), default=None,
                              metavar="SECONDS", help="Give up waiting after SECONDS (exit 1).")


@click.command()
@click.argument("questions", type=click.Path(path_type=Path), required=False)
@click.option("--collection", "-c", help="The collection to answer from.")
@click.option("--model", "-m", "models", multiple=True, metavar="NAME",
              help="A model to ask (repeatable).")
@click.option("--top-k", type=click.IntRange(1, 50), default=None,
              help="Contexts per question after fusion, for every model (default: each "
                   "model's catalog setting, `contexts`: 2 for the bundled models, else 4).")
@click.option("--bm25-weight", type=click.FloatRange(0, 1), default=0.3, show_default=True,
              help="Weight of BM25 in the fusion (FAISS gets the rest).")
@click.option("--max-tokens", type=click.IntRange(min=1), default=None,
              help="New tokens per answer (default: the model's catalog setting).")
@click.option("--keep-cut-endings", is_flag=True,
              help="Store an answer stopped at --max-tokens as generated, instead of trimmed "
                   "back to its last complete sentence.")
@click.option("--temperature", type=click.FloatRange(min=0), default=None,
              help="Sampling temperature (default: the model's, 0.01 as in the study).")
@click.option("--top-p", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="Nucleus sampling (default: the model's, 1.0 as in the study).")
@click.option("--sampling-top-k", type=click.IntRange(min=0), default=None,
              help="Sample among the k likeliest tokens, 0 for all (default: the model's, 40).")
@click.option("--repeat-penalty", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Penalty on recently generated tokens, 1.0 for none (default: the "
                   "model's, 1.1 as in the study's stack).")
@click.option("--repeat-last-n", type=click.IntRange(min=0), default=None,
              help="How many recent tokens the penalty looks at (default: the model's, 64).")
@click.option("--seed", type=click.IntRange(min=0), default=None,
              help="Sampling seed (default: the model's, 0).")
@click.option("--prompt", "prompt_name", metavar="NAME", default=None,
              help="Prompt template: ragfleet, study, or one of yours (see `ragfleet prompts`).")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Ask only the first N questions of the file.")
@click.option("--repeat", type=click.IntRange(1, 100), default=1, show_default=True,
              help="Ask each question N times (seeds seed..seed+N-1), for the spread of answers "
                   "at a temperature above 0.")
@click.option("--queue-anyway", is_flag=True, help="Queue work for models with no running pool.")
@click.option("--resume", "resume_id", metavar="BATCH",
              help="Run again only what is missing or failed in BATCH.")
@click.option("--wait/--no-wait", default=None,
              help="Wait until the batch finishes (default: when stdout is a terminal).")
@timeout_option
@json_option
def ask(questions, collection, models, top_k, bm25_weight, max_tokens, keep_cut_endings,
        temperature, top_p,
        sampling_top_k, repeat_penalty, repeat_last_n, seed, prompt_name, limit, repeat,
        queue_anyway,
        resume_id, wait, timeout, as_json):
    """Ask every question of QUESTIONS (CSV or JSONL) to every --model, from one collection."""
    session = connect()
    client, app = session.client, session.sender()
    if resume_id:
        rerun = batch_client.resume(app, client, resume_id)
        batch_id = resume_id
        info(f"batch {batch_id}: {rerun} (question, model) pairs queued again")
    else:
        if questions is None or not collection:
            raise UsageError("give QUESTIONS and --collection (or --resume BATCH)")
        sampling = SamplingOverrides(temperature=temperature, top_p=top_p, top_k=sampling_top_k,
                                     repeat_penalty=repeat_penalty,
                                     repeat_last_n=repeat_last_n, seed=seed)
        params = batch_client.batch_params(session.settings, top_k, bm25_weight, max_tokens,
                                           sampling, prompt_name,
                                           trim_cut=not keep_cut_endings)
        batch_id, without_pool = batch_client.submit(
            app, client, load_fleet_catalog(session.settings), questions, collection,
            list(models), params, queue_anyway, limit=limit, repeat=repeat,
            prompts_path=session.settings.prompts_path)
        if without_pool:
            info(f"warning: queued for {', '.join(without_pool)} with no running pool")
    if wait is None:
        wait = sys.stdout.isatty()
    if wait:
        batch = batch_client.wait(client, batch_id, on_progress=batch_progress(sys.stderr.isatty()),
                                  timeout_s=timeout)
    else:
        batch = batch_store.get(client, batch_id)
    if as_json:
        emit_json({"batch": batch_id, "status": batch["status"], "total": batch["total"],
                   "completed": batch["completed"], "failed": batch["failed"],
                   "cancelled": batch["cancelled"], "models": batch["models"]})
    else:
        click.echo(batch_id)


@click.command()
@click.argument("batch_id", metavar="BATCH")
@timeout_option
@json_option
def watch(batch_id, timeout, as_json):
    """Live progress per model; returns when the batch is finished (or exits 1 at --timeout)."""
    client = connect().client
    batch = batch_client.wait(client, batch_id, on_progress=batch_progress(sys.stderr.isatty()),
                              timeout_s=timeout)
    if as_json:
        emit_json(batch)
    else:
        click.echo(f"{batch_id}: {batch['status']} ({batch['completed']} completed, "
                   f"{batch['failed']} failed, {batch['cancelled']} cancelled of {batch['total']})")


@click.group(invoke_without_command=True)
@json_option
@click.pass_context
def batches(ctx, as_json):
    """Recent batches with their status and counters (or delete one)."""
    if ctx.invoked_subcommand:
        return
    found = batch_store.list_batches(connect().client)
    if as_json:
        emit_json({"batches": found})
        return
    click.echo(table(("BATCH", "STATUS", "COLLECTION", "MODELS", "DONE", "FAILED", "TOTAL"),
                     [(b["id"], b["status"], f"{b['collection']} v{b['version']}",
                       ",".join(b["models"]), b["completed"], b["failed"], b["total"])
                      for b in found]))


@batches.command("delete")
@click.argument("batch_id", metavar="BATCH")
@json_option
def batches_delete(batch_id, as_json):
    """Delete a finished batch, its results and judgements from Redis (a queued or running one is
    refused: cancel it first). Result files already written stay."""
    client = connect().client
    state = batch_store.delete(client, batch_id)
    judgements.delete(client, batch_id)  # `ragfleet judge`'s grades, kept apart from results
    if as_json:
        emit_json({"deleted": batch_id, "status": state})
    else:
        click.echo(f"deleted batch {batch_id} ({state})")


@click.command()
@click.argument("batch_id", metavar="BATCH")
@json_option
def cancel(batch_id, as_json):
    """Stop the queued work of a batch; finished results are kept."""
    state = batch_store.cancel(connect().client, batch_id)
    if as_json:
        emit_json({"batch": batch_id, "status": state})
    else:
        click.echo(f"{batch_id}: {state}")


COMMANDS = (ask, batches, watch, cancel)
