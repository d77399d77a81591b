"""`ragfleet demo`: the study end to end on the bundled data."""

from __future__ import annotations

import sys

import click

from producer.output import batch_progress, batch_summary, info
from shared.config import load_settings
from shared.errors import UsageError
from shared.llm.catalog import load_fleet_catalog


@click.command()
@click.option("--questions", "n_questions", type=click.IntRange(1, 28), default=8,
              show_default=True, help="How many of the 28 Standard-plan questions to ask.")
# 128: the default prompt's answers reach it for 3 of the 50 Northwind questions (96: 6)
@click.option("--max-tokens", type=click.IntRange(8, 1024), default=128, show_default=True)
@click.option("--top-k", type=click.IntRange(1, 10), default=None,
              help="Contexts per question for every model (default: each model's catalog "
                   "setting).")
@click.option("--model", "-m", "models", multiple=True, metavar="NAME",
              help="A model to compare (repeatable; default: the two bundled ones). The "
                   "study's: tinyllama-1.1b-chat and mistral-7b-instruct (`models pull` them).")
@click.option("--generate", "generate", is_flag=True,
              help="No answer key: a model writes the questions from the PDF first "
                   "(`ragfleet questions generate`), and the models are compared on them.")
@click.option("--generator", metavar="NAME", default=None,
              help="The model that writes the questions with --generate (default: "
                   "qwen2.5-coder-1.5b when installed, else smollm2-135m).")
def demo(n_questions, max_tokens, top_k, models, generate, generator):
    """The study end to end on the bundled Northwind PDF: SmolLM2 135M against Gemma 3 270M,
    or any models of the catalog."""
    from producer import demo as demo_run

    settings = load_settings()
    catalog = load_fleet_catalog(settings)
    models = list(models) or demo_run.MODELS
    if generator and not generate:
        raise UsageError("--generator goes with --generate")
    if generate:
        generator = generator or demo_run.default_generator(catalog, settings, models)
    report, out = demo_run.run(settings, catalog, n_questions, max_tokens, top_k, say=info,
                               on_batch_progress=batch_progress(sys.stderr.isatty()),
                               models=models, generator=generator)
    click.echo(batch_summary(report))
    click.echo(f"\nfull results: {out}/ (report.html, results.json, .csv, .md, seed.csv)")
    click.echo(f"more: ragfleet results {report['batch']['id']} --format json; "
               "stop the fleet: ragfleet down")


COMMANDS = (demo,)
