"""`ragfleet models`: the catalog with each model's availability and file size."""

from __future__ import annotations

import click

from producer.output import emit_json, human_size, json_option, table
from shared.config import load_settings
from shared.llm.catalog import load_catalog


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
            "temperature": model.temperature,
            "top_p": model.top_p,
            "install": model.install,
            "description": model.description,
        })
    if as_json:
        emit_json({"models": rows})
        return
    click.echo(table(
        ("MODEL", "AVAILABILITY", "FILE", "SIZE", "N_CTX", "CHAT FORMAT"),
        [(r["name"], r["availability"], r["file"], human_size(r["size"]), r["n_ctx"],
          r["chat_format"]) for r in rows],
    ))


COMMANDS = (models,)
