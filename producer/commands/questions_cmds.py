"""`ragfleet questions generate`: a questions file written from a collection by a model's pools,
for users with documents and no answer key; `ragfleet questions collect` writes it again from a
job (after --no-wait, or with another -o)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from producer import generation_client
from producer.commands.batch_cmds import timeout_option
from producer.output import emit_json, info, json_option, write_file
from producer.session import connect
from shared.errors import UsageError
from shared.llm.catalog import load_fleet_catalog
from shared.pipeline import question_generation
from shared.state import generations


@click.group()
def questions() -> None:
    """Questions files written from your documents."""


output_option = click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
                             help="The questions file (JSONL) to write. Default: JOB.jsonl here.")
force_option = click.option("--force", is_flag=True, help="Replace the output file if it exists.")


@questions.command("generate")
@click.argument("collection")
@click.option("--model", "-m", required=True, metavar="NAME",
              help="The model whose pools write the questions (the strongest you have).")
@click.option("-n", "count", type=int, default=50, show_default=True,
              help="Questions to keep (more passages are sampled: the filters drop some).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Which passages are sampled: the same seed, collection and -n, the same ones.")
@output_option
@force_option
@click.option("--queue-anyway", is_flag=True, help="Queue the work with no running pool.")
@click.option("--wait/--no-wait", default=None,
              help="Wait and write the file (default: when stdout is a terminal); without "
                   "waiting, print the job id for `ragfleet questions collect`.")
@timeout_option
@json_option
def generate(collection, model, count, seed, output, force, queue_anyway, wait, timeout,
             as_json):
    """Sample passages across COLLECTION's documents and pages, have --model's pools write a
    question and its reference answer from each (one task per passage, on any host), drop the
    items that fail the filters, and write the rest as a questions file for `ragfleet ask`."""
    if count < 1:
        raise UsageError(f"-n must be at least 1 (got {count})")
    generation_client.check_output(output, force)
    session = connect()
    job_id, job = generation_client.submit(
        session.sender(), session.client, load_fleet_catalog(session.settings), collection,
        model, count, seed, queue_anyway)
    info(f"generation {job_id}: {len(job['passages'])} passages of {collection} "
         f"(version {job['version']}) sent to {model}")
    if wait is None:
        wait = sys.stdout.isatty()
    if not wait:
        if as_json:
            emit_json({"job": job_id, "passages": len(job["passages"]), "waited": False})
        else:
            click.echo(job_id)
        return
    _wait(session.client, job_id, len(job["passages"]), timeout)
    _write(session.client, job_id, output or Path(f"{job_id}.jsonl"), force, as_json)


@questions.command("collect")
@click.argument("job_id", metavar="JOB")
@output_option
@force_option
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Wait for the items still being written.")
@timeout_option
@json_option
def collect(job_id, output, force, wait, timeout, as_json):
    """Filter JOB's items and write the questions file (again)."""
    output = output or Path(f"{job_id}.jsonl")
    generation_client.check_output(output, force)
    session = connect()
    job = generations.get(session.client, job_id)
    if wait:
        _wait(session.client, job_id, len(job["passages"]), timeout)
    _write(session.client, job_id, output, force, as_json)


def _wait(client, job_id: str, total: int, timeout: int | None) -> None:
    terminal = sys.stderr.isatty()

    def show(record: dict) -> None:
        if terminal:
            click.echo(f"\r  {record['settled']}/{total} passages done\x1b[K", err=True, nl=False)

    generation_client.wait(client, job_id, total, on_progress=show, timeout_s=timeout)
    if terminal:
        click.echo("", err=True)


def _write(client, job_id: str, output: Path, force: bool, as_json: bool) -> None:
    generation_client.check_output(output, force)
    job, kept, dropped, pending = generation_client.collect(client, job_id)
    write_file(output, question_generation.questions_file(job_id, job, kept))
    report = {"job": job_id, "output": str(output), "model": job["model"],
              "collection": job["collection"], "asked": job["n"],
              "passages": len(job["passages"]), "kept": len(kept), "pending": pending,
              "dropped": dict(dropped.most_common())}
    if as_json:
        emit_json(report)
        return
    why = ", ".join(f"{n} {reason}" for reason, n in dropped.most_common()) or "none"
    info(f"kept {len(kept)} of {job['n']} asked for, from {len(job['passages'])} passages; "
         f"dropped: {why}" + (f"; {pending} not written yet" if pending else ""))
    click.echo(str(output))


COMMANDS = (questions,)
