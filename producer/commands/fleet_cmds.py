"""Fleet commands: up, down, status."""

from __future__ import annotations

import click

from producer import fleet
from producer.output import emit_json, human_size, info, json_option, table
from shared.config import load_settings
from shared.llm.catalog import load_fleet_catalog


@click.command()
@click.option("--model", "models", multiple=True, metavar="NAME",
              help="A model pool to start (repeatable). Default: every model whose file is here.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="llama.cpp threads per pool. Default: the catalog's, else every core when "
                   "the pools take turns, cores // pools when they run concurrently.")
@click.option("--parallel", type=click.IntRange(min=1, max=64), default=None,
              help="Questions each model pool decodes together. Default: the catalog's.")
@click.option("--turns/--concurrent", "turns", default=None,
              help="Model pools take turns, each generating alone with every core (the "
                   "default for several models: each model's figures are its own), or run "
                   "concurrently sharing the cores (throughput).")
@click.option("--flower", "with_flower", is_flag=True, help="Also start Flower (basic auth).")
@json_option
def up(models: tuple[str, ...], threads: int | None, parallel: int | None, turns: bool | None,
       with_flower: bool, as_json: bool) -> None:
    """Start Redis (embedded unless REDIS_URL is set), the cpu pool and one pool per model, in
    the background; return when every pool is online with its model loaded."""
    settings = load_settings()
    catalog = load_fleet_catalog(settings)
    fleet.up(settings, catalog, list(models) or None, threads, with_flower, say=info,
             parallel=parallel, turns=turns)
    _print_status(fleet.status(settings), as_json)


@click.command()
@click.option("--grace", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
              help="How long pools may finish their running tasks; then those are given back "
                   "to the queue. Default: the longest task time limit plus 30 s.")
@json_option
def down(grace: float | None, as_json: bool) -> None:
    """Stop everything `up` started for this data directory. Pools finish their running tasks
    first (warm shutdown)."""
    stopped = fleet.down(load_settings(), grace_s=grace, say=info)
    if as_json:
        emit_json({"stopped": stopped})
    else:
        click.echo(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@click.command()
@json_option
def status(as_json: bool) -> None:
    """Redis health, each pool (workers online, backend, model file), queue lengths."""
    _print_status(fleet.status(load_settings()), as_json)


def _print_status(state: dict, as_json: bool) -> None:
    if as_json:
        emit_json(state)
        return
    redis_info = state["redis"]
    kind = "embedded" if redis_info["embedded"] else "external"
    click.echo(f"Redis   {redis_info['url']} ({kind}, up, {human_size(redis_info['used_memory'])})")
    if state["flower"]:
        click.echo(f"Flower  {state['flower']['url']} (user {state['flower']['user']})")
    rows = [
        (p["model"], p["queue"], p["workers"],
         p["state"] + (f", {p['turn']}" if p.get("turn") else ""), p["backend"] or "-",
         p["n_threads"] or "-", p["parallel"] or "-", p["model_file"] or "-",
         human_size(p["model_size"]), human_size(p["rss_bytes"]), p["queued"])
        for p in state["pools"]
    ]
    click.echo(table(("POOL", "QUEUE", "WORKERS", "STATE", "BACKEND", "THREADS", "PARALLEL",
                      "MODEL FILE", "SIZE", "MEMORY", "QUEUED"), rows))


COMMANDS = (up, down, status)
