"""Printing: human tables on stdout by default, JSON with --json; progress and errors on stderr."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import click

from shared.errors import RagfleetError
from shared.report import exports


def emit_json(data) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


def info(message: str) -> None:
    click.echo(message, err=True)


def human_size(size: int | None) -> str:
    if size is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
"""The one `--json` flag every listing command takes."""


def write_file(path: Path, text: str) -> None:
    """Write a result file; a path that cannot be written is a one-line error."""
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise RagfleetError(f"cannot write {path}: {exc.strerror}") from None


def batch_summary(report: dict) -> str:
    """The per-model summary of a batch as people read it: a head line, the table, the pairs."""
    batch = report["batch"]
    head = (f"batch {batch['id']}: {batch['status']}, collection {batch['collection']} "
            f"v{batch['version']}, {batch['questions']} questions"
            + (f" (first {batch['limit']} of the file)" if batch.get("limit") else "")
            + (f", each asked {batch['repeat']} times" if (batch.get("repeat") or 1) > 1 else ""))
    body = table(exports.SUMMARY_HEADERS, exports.summary_rows(report))
    return "\n".join([head, body, *exports.paired_lines(report), *exports.retrieval_lines(report),
                      *exports.repeat_lines(report)])


def batch_progress(enabled: bool):
    """A bar per model, redrawn in place on a terminal; nothing for scripts and logs."""
    drawn = {"lines": 0}

    def show(batch: dict) -> None:
        if not enabled:
            return
        per_question = batch["total"] // max(1, len(batch["models"]))
        lines = []
        for model, counts in batch["per_model"].items():
            done = sum(counts.values())
            filled = int(30 * done / max(1, per_question))
            # answered, scores not stored yet (scoring follows on the cpu pool)
            waiting = batch.get("answered", {}).get(model, 0) - counts["completed"]
            lines.append(f"  {model:<22} [{'#' * filled}{'-' * (30 - filled)}] {done}/{per_question}"
                         + (f" ({counts['failed']} failed)" if counts["failed"] else "")
                         + (f", {waiting} answered, being scored" if waiting > 0 else ""))
        lines.append(f"  batch {batch['id']}: {batch['status']}")
        if drawn["lines"]:
            click.echo(f"\x1b[{drawn['lines']}F", err=True, nl=False)
        click.echo("\n".join(f"{line}\x1b[K" for line in lines), err=True)
        drawn["lines"] = len(lines)

    return show
