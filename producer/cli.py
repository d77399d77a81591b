"""`ragfleet`: the command line. Commands live in producer/commands/, one module per noun."""

from __future__ import annotations

import logging
import sys

import click
import redis

from producer.commands import (
    batch_cmds,
    collections_cmds,
    compare_cmd,
    demo_cmd,
    fleet_cmds,
    ingest_cmds,
    jobs_cmds,
    judge_cmds,
    models_cmds,
    prompts_cmds,
    questions_cmds,
    results_cmds,
    worker_cmd,
)
from shared.errors import EXIT_FAILURE, EXIT_USAGE, RagfleetError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ragfleet")
def cli() -> None:
    """Answer batches of questions about your PDFs with small local GGUF models, and measure
    how accurate and how fast each model is.

    Exit codes: 0 ok, 1 failure, 2 usage error, 69 Redis unreachable.
    """


for module in (fleet_cmds, worker_cmd, models_cmds, prompts_cmds, ingest_cmds, collections_cmds,
               jobs_cmds, batch_cmds, questions_cmds, judge_cmds, results_cmds, compare_cmd, demo_cmd):
    for command in module.COMMANDS:
        cli.add_command(command)


REDIS_FULL = ("Redis is full (its maxmemory is reached; the embedded one's is "
              "RAGFLEET_REDIS_MAXMEMORY): delete finished batches (`ragfleet batches delete`) or "
              "collections, or give Redis more memory")


def _redis_full(exc: BaseException | None) -> bool:
    """Redis refused a write for want of memory (noeviction), here or under a wrapper's error."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, redis.exceptions.OutOfMemoryError):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors print one line on stderr and exit with their code."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        cli.main(args=argv, prog_name="ragfleet", standalone_mode=False)
    except RagfleetError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("aborted", err=True)
        sys.exit(EXIT_FAILURE)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(EXIT_USAGE)
    except Exception as exc:
        if not _redis_full(exc):
            raise
        click.echo(f"error: {REDIS_FULL}", err=True)
        sys.exit(EXIT_FAILURE)


if __name__ == "__main__":
    main()
