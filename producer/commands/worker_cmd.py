"""`ragfleet worker`: run one pool in the foreground. The only command that starts a worker,
so the only place the producer package reaches into `workers/` (imported when it runs)."""

from __future__ import annotations

import logging

import click

from shared.config import load_settings


@click.command()
@click.option("--model", "model", metavar="NAME", help="Pin this model (consumes llm.NAME).")
@click.option("--cpu", "cpu", is_flag=True, help="The cpu pool (ingestion, retrieval, scoring).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="llama.cpp threads. Default: the catalog's, else all cores.")
@click.option("--concurrency", type=click.IntRange(min=1), default=1,
              help="Pool processes of the cpu pool.")
@click.option("--parallel", type=click.IntRange(min=1, max=64), default=None,
              help="Questions a model pool decodes together. Default: the catalog's (1).")
@click.option("--turns", is_flag=True,
              help="Take turns with this host's other --turns pools: generate only while no "
                   "other one does (each with every core).")
@click.option("--name", default=None, metavar="NODENAME",
              help="Celery node name, e.g. gemma@%h (default: POOL-PID@HOST).")
@click.option("--loglevel", default="INFO", show_default=True)
def worker(model: str | None, cpu: bool, threads: int | None, concurrency: int,
           parallel: int | None, turns: bool, name: str | None, loglevel: str) -> None:
    """Run one pool in the foreground, against REDIS_URL (or this data dir's embedded Redis)."""
    if bool(model) == cpu:
        raise click.UsageError("give exactly one of --model NAME or --cpu")
    logging.getLogger().setLevel(loglevel.upper())
    from workers.main import run  # the tasks and their Celery worker load only here

    if turns and cpu:
        raise click.UsageError("--turns is for model pools (--model NAME)")
    run(load_settings(), model, threads, concurrency, loglevel, nodename=name, parallel=parallel,
        turns=turns)


COMMANDS = (worker,)
