"""`ragfleet ingest`: PDFs or URLs into a new version of a collection."""

from __future__ import annotations

import sys
import time

import click

from producer import ingest_client
from producer.commands.jobs_cmds import print_job
from producer.output import info, json_option
from producer.session import connect
from shared.errors import RagfleetError
from shared.state import jobs


class JobFailed(RagfleetError):
    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


@click.command()
@click.argument("inputs", nargs=-1, required=True, metavar="PATH_OR_URL...")
@click.option("--collection", "-c", required=True, help="The collection to add the documents to.")
@click.option("--chunk-size", type=click.IntRange(min=50), default=None,
              help="Characters per chunk (default 1000; fixed when the collection is created).")
@click.option("--chunk-overlap", type=click.IntRange(min=0), default=None,
              help="Characters shared by consecutive chunks (default 150).")
@click.option("--wait/--no-wait", default=None,
              help="Wait until the version is ready (default: when stdout is a terminal).")
@json_option
def ingest(inputs, collection, chunk_size, chunk_overlap, wait, as_json):
    """Turn PDF files or http(s) URLs into a new version of a collection."""
    session = connect()
    client = session.client
    job_id = ingest_client.submit(session.sender(), client, session.settings, list(inputs),
                                  collection, chunk_size, chunk_overlap)
    if wait is None:
        wait = sys.stdout.isatty()
    if not wait:
        print_job(jobs.get(client, job_id), as_json)
        return
    show_progress = sys.stderr.isatty()  # a progress bar for people, quiet for scripts and logs
    if show_progress:
        info(f"ingestion job {job_id} queued")
    job = ingest_client.wait(client, job_id, on_progress=_progress_printer() if show_progress else None)
    if job["state"] == jobs.FAILED:
        raise JobFailed(job["error"], job.get("error_code") or 1)
    print_job(job, as_json)


def _progress_printer():
    """One line redrawn in place: stage, a bar, done/total, and the rate of the stage (pages
    per second while extracting, chunks per second while embedding)."""
    started: dict[str, tuple[float, int]] = {}

    def show(job):
        if job["stage"] and job["total"]:
            now = time.monotonic()
            first_seen, first_done = started.setdefault(job["stage"], (now, job["done"]))
            unit = {"extract": "pages", "embed": "chunks"}.get(job["stage"], "items")
            rate = (f" {(job['done'] - first_done) / (now - first_seen):.1f} {unit}/s"
                    if now - first_seen > 1 and job["done"] > first_done else "")
            filled = int(30 * job["done"] / job["total"])
            bar = "#" * filled + "-" * (30 - filled)
            end = "\n" if job["state"] in jobs.FINISHED else ""
            click.echo(f"\r  {job['stage']:<8} [{bar}] {job['done']}/{job['total']}{rate}\x1b[K",
                       err=True, nl=False)
            click.echo(end, err=True, nl=False)

    return show


COMMANDS = (ingest,)
