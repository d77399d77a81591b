"""`ragfleet judge`: a model's pool grades a finished batch's answers against their references
(1-5), stored apart from the cosine results and labelled with the judging model."""

from __future__ import annotations

import sys

import click

from broker.queues import JUDGE_TASK, llm_queue
from producer import polling
from producer.batch_client import check_pools
from producer.commands.batch_cmds import timeout_option
from producer.output import emit_json, info, json_option, table
from producer.session import connect
from shared.errors import UsageError
from shared.llm.catalog import load_fleet_catalog
from shared.pipeline import judging
from shared.report.exports import number


@click.command()
@click.argument("batch_id", metavar="BATCH")
@click.option("--model", "-m", "judge_model", required=True, metavar="NAME",
              help="The judging model: its pool grades the answers.")
@click.option("--models", "answer_models", metavar="A,B",
              help="Judge only these models' answers (default: every model of the batch).")
@click.option("--queue-anyway", is_flag=True, help="Queue the judgements with no running pool.")
@click.option("--wait/--no-wait", default=None,
              help="Wait until every answer is judged (default: when stdout is a terminal).")
@timeout_option
@json_option
def judge(batch_id, judge_model, answer_models, queue_anyway, wait, timeout, as_json):
    """Have --model grade each answer of BATCH that has a reference, from 1 (wrong) to 5 (fully
    right): greedy, a few tokens, the first digit 1-5 of its reply. Answers it graded already
    are not sent again. `ragfleet results BATCH` shows each judge's mean."""
    session = connect()
    client = session.client
    load_fleet_catalog(session.settings).get(judge_model)  # an unknown model: one line, exit 2
    models = None
    if answer_models is not None:
        models = [m.strip() for m in answer_models.split(",") if m.strip()]
        if not models:
            raise UsageError("--models: give model names separated by commas")
    todo, graded = judging.plan(client, batch_id, judge_model, models)
    run = judging.new_run()
    if todo:
        check_pools(client, [judge_model], queue_anyway)
        app = session.sender()
        for question_id, model in todo:
            app.send_task(JUDGE_TASK, args=[batch_id, question_id, model, judge_model, run],
                          queue=llm_queue(judge_model))
    if wait is None:
        wait = sys.stdout.isatty()
    if wait and todo:
        polling.until_finished(
            lambda: {"settled": judging.settled(client, batch_id, judge_model, todo, run)},
            lambda r: r["settled"] >= len(todo), f"judging of batch {batch_id} by {judge_model}",
            timeout_s=timeout)
    rows = judging.summary(client, batch_id, judge_model)
    if as_json:
        emit_json({"batch": batch_id, "judge_model": judge_model, "run": run, "sent": len(todo),
                   "graded_before": graded, "waited": bool(wait and todo), "summary": rows})
        return
    info(f"batch {batch_id}: {len(todo)} answers sent to {judge_model} for judging"
         + (f", {graded} graded before" if graded else ""))
    if wait or not todo:
        click.echo(table(("MODEL", "JUDGED", "FAILED", f"JUDGE MEAN ({judge_model})"),
                         [(r["model"], r["judged"], r["failed"], number(r["judge_mean"], 2))
                          for r in rows]))
    else:
        click.echo(run)


COMMANDS = (judge,)
