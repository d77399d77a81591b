"""`ragfleet jobs`: ingestion jobs."""

from __future__ import annotations

import click

from producer.output import emit_json, json_option, table
from producer.session import connect
from shared.pipeline import ingest_job
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


class _JobsGroup(click.Group):
    """`ragfleet jobs` lists, `ragfleet jobs JOB` shows one (as `jobs show JOB`), and
    `ragfleet jobs cancel JOB` cancels one."""

    def parse_args(self, ctx, args):
        first = next((i for i, a in enumerate(args) if not a.startswith("-")), None)
        if first is not None and args[first] not in self.commands:
            args = [*args[:first], "show", *args[first:]]
        return super().parse_args(ctx, args)


@click.group("jobs", cls=_JobsGroup, invoke_without_command=True,
             subcommand_metavar="[JOB | cancel JOB]")
@json_option
@click.pass_context
def jobs_cmd(ctx, as_json):
    """Recent ingestion jobs, one job (jobs JOB), or cancel one (jobs cancel JOB)."""
    ctx.obj = {"as_json": as_json}
    if ctx.invoked_subcommand:
        return
    found = jobs.recent(connect().client)
    if as_json:
        emit_json({"jobs": found})
        return
    click.echo(table(("JOB", "COLLECTION", "STATE", "STAGE", "ERROR"),
                     [(j["id"], j["collection"], j["state"], j["stage"] or "-", j["error"] or "")
                      for j in found]))


@jobs_cmd.command("show", hidden=True)
@click.argument("job_id", metavar="JOB")
@json_option
@click.pass_obj
def jobs_show(obj, job_id, as_json):
    """One ingestion job."""
    print_job(jobs.get(connect().client, job_id), as_json or obj["as_json"])


@jobs_cmd.command("cancel")
@click.argument("job_id", metavar="JOB")
@json_option
@click.pass_obj
def jobs_cancel(obj, job_id, as_json):
    """Cancel a queued or running ingestion job: it fails with 'cancelled by the user' (so
    `ingest --wait` returns), a worker skips it, and no version is stored unless it was being
    stored already. A finished job stays as it is."""
    job = ingest_job.cancel(connect().client, job_id)
    if as_json or obj["as_json"]:
        emit_json(job)
    elif job.get("cancelled"):
        click.echo(f"job {job_id}: {job['state']} ({job['error']})")
    else:
        click.echo(f"job {job_id}: {job['state']} already")


COMMANDS = (jobs_cmd,)
