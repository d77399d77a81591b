"""`ragfleet models`: the catalog with each model's availability and file size."""

from __future__ import annotations

from pathlib import Path

import click

from producer.output import emit_json, human_size, json_option, table
from shared.config import load_settings
from shared.errors import RagfleetError
from shared.llm.catalog import ModelSettings, load_catalog
from shared.llm.codec import resolve_sampling, template_in_use
from shared.llm.requests import SamplingOverrides


@click.command()
@json_option
def models(as_json: bool) -> None:
    """List the model catalog: availability, file, size, settings."""
    settings = load_settings()
    catalog = load_catalog(settings.catalog_path)
    rows = []
    for model in catalog.models.values():
        path = model.path(settings.models_dir)
        size = path.stat().st_size if path.is_file() else None
        rows.append({
            "name": model.name,
            "availability": model.availability(settings.models_dir).value,
            "file": model.file,
            "path": str(path),
            "size": size,
            "n_ctx": model.n_ctx,
            "n_gpu_layers": model.n_gpu_layers,
            "n_threads": model.n_threads,
            "chat_format": model.chat_format or "gguf",
            "chat_template": _template(model, path),
            "sampling": resolve_sampling(model, SamplingOverrides()).model_dump(),
            "install": model.install,
            "description": model.description,
        })
    if as_json:
        emit_json({"models": rows})
        return
    click.echo(table(
        ("MODEL", "AVAILABILITY", "FILE", "SIZE", "N_CTX", "CHAT TEMPLATE"),
        [(r["name"], r["availability"], r["file"], human_size(r["size"]), r["n_ctx"],
          r["chat_template"]) for r in rows],
    ))


def _template(model: ModelSettings, path: Path) -> str:
    """The template a pool will use, read from the file where it is here."""
    if not path.is_file():
        return f"{model.chat_format} (catalog)" if model.chat_format else "from the GGUF"
    try:
        return template_in_use(model, path)
    except RagfleetError as exc:
        return f"unusable: {exc}"
    except (ValueError, RuntimeError) as exc:  # llama.cpp cannot read the file
        return f"unreadable GGUF: {exc}"


COMMANDS = (models,)
