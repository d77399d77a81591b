"""`ragfleet ingest` and `ragfleet collections`."""

from __future__ import annotations

import sys

import click

from broker import connection
from broker.app import sender
from producer import ingest_client
from producer.output import emit_json, human_size, info, table
from shared import collection_store, jobs
from shared.config import load_settings
from shared.errors import RagfleetError


class JobFailed(RagfleetError):
    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def _connect():
    settings = load_settings()
    url, _ = connection.connect(settings)
    return settings, url, connection.client(url, timeout_s=30, patient=True)


@click.command()
@click.argument("inputs", nargs=-1, required=True, metavar="PATH_OR_URL...")
@click.option("--collection", "-c", required=True, help="The collection to add the documents to.")
@click.option("--chunk-size", type=click.IntRange(min=50), default=None,
              help="Characters per chunk (default 1000; fixed when the collection is created).")
@click.option("--chunk-overlap", type=click.IntRange(min=0), default=None,
              help="Characters shared by consecutive chunks (default 150).")
@click.option("--wait/--no-wait", default=None,
              help="Wait until the version is ready (default: when stdout is a terminal).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
def ingest(inputs, collection, chunk_size, chunk_overlap, wait, as_json):
    """Turn PDF files or http(s) URLs into a new version of a collection."""
    settings, url, client = _connect()
    job_id = ingest_client.submit(sender(url, settings), client, settings, list(inputs),
                                  collection, chunk_size, chunk_overlap)
    if wait is None:
        wait = sys.stdout.isatty()
    if not wait:
        _print_job(jobs.get(client, job_id), as_json)
        return
    show_progress = sys.stderr.isatty()  # a progress bar for people, quiet for scripts and logs
    if show_progress:
        info(f"ingestion job {job_id} queued")
    job = ingest_client.wait(client, job_id, on_progress=_progress_printer() if show_progress else None)
    if job["state"] == jobs.FAILED:
        raise JobFailed(job["error"], job.get("error_code") or 1)
    _print_job(job, as_json)


def _progress_printer():
    """One line redrawn in place: stage, a bar, done/total."""
    def show(job):
        if job["stage"] and job["total"]:
            filled = int(30 * job["done"] / job["total"])
            bar = "#" * filled + "-" * (30 - filled)
            end = "\n" if job["state"] in jobs.FINISHED else ""
            click.echo(f"\r  {job['stage']:<8} [{bar}] {job['done']}/{job['total']}", err=True, nl=False)
            click.echo(end, err=True, nl=False)

    return show


def _print_job(job: dict, as_json: bool) -> None:
    if as_json:
        emit_json(job)
        return
    result = job.get("result")
    if not result:
        click.echo(f"job {job['id']}: {job['state']}" + (f" ({job['error']})" if job["error"] else ""))
        return
    verb = "now at" if result["changed"] else "unchanged at"
    click.echo(f"collection {result['collection']} {verb} version {result['version']}, "
               f"{result['chunks']} chunks")
    click.echo(table(("DOCUMENT", "STATUS", "PAGES", "CHUNKS"),
                     [(d["name"], d["status"], d.get("pages") or "-", d.get("chunks") or "-")
                      for d in result["documents"]]))


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
@click.pass_context
def collections(ctx, as_json):
    """List collections (or show / delete one)."""
    if ctx.invoked_subcommand:
        return
    _, _, client = _connect()
    found = collection_store.list_collections(client)
    if as_json:
        emit_json({"collections": [_manifest_json(m) for m in found]})
        return
    click.echo(table(("COLLECTION", "VERSION", "DOCUMENTS", "PAGES", "CHUNKS", "CHUNK SIZE"),
                     [(m.name, m.version, len(m.documents), sum(d["pages"] for d in m.documents),
                       m.chunks, m.chunk_size) for m in found]))


def _manifest_json(m) -> dict:
    return {**m.__dict__, "pages": sum(d["pages"] for d in m.documents)}


@collections.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
def collections_show(name, as_json):
    """One collection: documents with their pages, chunks, version, embedding model."""
    _, _, client = _connect()
    m = collection_store.manifest(client, collection_store.check_name(name))
    if as_json:
        emit_json(_manifest_json(m))
        return
    click.echo(f"{m.name} version {m.version}: {m.chunks} chunks of {m.chunk_size} characters "
               f"(overlap {m.chunk_overlap}), embeddings {m.embedding_model}")
    click.echo(table(("DOCUMENT", "PAGES", "CHUNKS", "SIZE", "SHA256"),
                     [(d["name"], d["pages"], d["chunks"], human_size(d["bytes"]), d["sha256"][:12])
                      for d in m.documents]))


@collections.command("delete")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
def collections_delete(name, as_json):
    """Delete a collection and all its versions."""
    _, _, client = _connect()
    m = collection_store.delete(client, collection_store.check_name(name))
    if as_json:
        emit_json({"deleted": m.name, "version": m.version})
    else:
        click.echo(f"deleted collection {m.name} (was at version {m.version})")


@click.command("jobs")
@click.argument("job_id", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
def jobs_cmd(job_id, as_json):
    """Recent ingestion jobs, or one job."""
    _, _, client = _connect()
    if job_id:
        _print_job(jobs.get(client, job_id), as_json)
        return
    found = jobs.recent(client)
    if as_json:
        emit_json({"jobs": found})
        return
    click.echo(table(("JOB", "COLLECTION", "STATE", "STAGE", "ERROR"),
                     [(j["id"], j["collection"], j["state"], j["stage"] or "-", j["error"] or "")
                      for j in found]))


COMMANDS = (ingest, collections, jobs_cmd)
