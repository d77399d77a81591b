"""`ragfleet jobs`: ingestion jobs."""

from __future__ import annotations

import click

from producer.output import emit_json, json_option, table
from producer.session import connect
from shared.state import jobs


def print_job(job: dict, as_json: bool) -> None:
    """One job: its state, or the version it made with its documents."""
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


@click.command("jobs")
@click.argument("job_id", required=False)
@json_option
def jobs_cmd(job_id, as_json):
    """Recent ingestion jobs, or one job."""
    client = connect().client
    if job_id:
        print_job(jobs.get(client, job_id), as_json)
        return
    found = jobs.recent(client)
    if as_json:
        emit_json({"jobs": found})
        return
    click.echo(table(("JOB", "COLLECTION", "STATE", "STAGE", "ERROR"),
                     [(j["id"], j["collection"], j["state"], j["stage"] or "-", j["error"] or "")
                      for j in found]))


COMMANDS = (jobs_cmd,)
