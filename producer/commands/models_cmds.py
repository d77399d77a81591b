"""`ragfleet models [pull|add|remove]`: the catalog with each model's source, availability,
chat template and settings; downloading a model; the user's own entries."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from producer.output import emit_json, human_size, info, json_option, table
from shared.config import load_settings
from shared.errors import RagfleetError, UsageError
from shared.llm import hub
from shared.llm.catalog import (
    ModelSettings,
    add_user_model,
    check_gguf,
    load_fleet_catalog,
    remove_user_model,
)
from shared.llm.codec import resolve_sampling, template_in_use
from shared.llm.requests import SamplingOverrides


@click.group(invoke_without_command=True)
@json_option
@click.pass_context
def models(ctx, as_json: bool) -> None:
    """List the model catalog: source, availability, file, size, chat template, settings."""
    if ctx.invoked_subcommand:
        return
    settings = load_settings()
    catalog = load_fleet_catalog(settings)
    rows = []
    for model in catalog.models.values():
        path = model.path(settings.models_dir)
        size = path.stat().st_size if path.is_file() else None
        rows.append({
            "name": model.name,
            "catalog": "yours" if model.name in catalog.user_models else "shipped",
            "availability": model.availability(settings.models_dir).value,
            "source": model.source,
            "how_to_get": model.how_to_get,
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
        ("MODEL", "AVAILABILITY", "SOURCE", "SIZE", "N_CTX", "CHAT TEMPLATE"),
        [(r["name"], r["availability"], r["source"], human_size(r["size"]), r["n_ctx"],
          r["chat_template"]) for r in rows],
    ))
    missing = [r for r in rows if r["availability"] not in ("present", "assemblable")]
    for r in missing:
        info(f"{r['name']}: {r['how_to_get']}")


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


@models.command("pull")
@click.argument("name")
@json_option
def models_pull(name: str, as_json: bool) -> None:
    """Download a model's GGUF from its hub source (HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE are
    honoured; a partial download resumes), check it and move it into the models directory."""
    settings = load_settings()
    model = load_fleet_catalog(settings).get(name)
    target = model.path(settings.models_dir)
    if target.is_file():
        check_gguf(target, name)
        result = {"model": name, "path": str(target), "size": target.stat().st_size,
                  "downloaded": False}
    else:
        path = hub.pull(model, settings.models_dir, progress=sys.stderr.isatty())
        result = {"model": name, "path": str(path), "size": path.stat().st_size,
                  "downloaded": True}
    if as_json:
        emit_json(result)
    else:
        verb = "downloaded" if result["downloaded"] else "already here"
        click.echo(f"{name}: {verb}, {result['path']} ({human_size(result['size'])})")


@models.command("add")
@click.argument("name")
@click.option("--file", "gguf", type=click.Path(dir_okay=False, path_type=Path),
              help="A GGUF file on this machine (used where it is).")
@click.option("--hf", "hf", metavar="REPO/FILE",
              help="A hub file, e.g. TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF/"
                   "tinyllama-1.1b-chat-v1.0.Q5_K_M.gguf (then `ragfleet models pull NAME`).")
@click.option("--sha256", default=None, help="Checksum a pull must match.")
@click.option("--chat-format", default=None,
              help="A built-in chat format (chatml, gemma) instead of the GGUF's template.")
@click.option("--n-ctx", type=click.IntRange(min=128), default=None, help="Context window.")
@click.option("--max-tokens", type=click.IntRange(min=1), default=None,
              help="Default new tokens per answer.")
@click.option("--n-threads", type=click.IntRange(min=1), default=None)
@click.option("--rope-freq-base", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Override the GGUF's RoPE base (10000 runs the model as LangChain's "
                   "LlamaCpp, the study's stack, does by default).")
@click.option("--description", default=None)
@json_option
def models_add(name, gguf, hf, sha256, chat_format, n_ctx, max_tokens, n_threads,
               rope_freq_base, description, as_json):
    """Add a model to your catalog (DATA_DIR/catalog.toml, over the shipped one)."""
    if bool(gguf) == bool(hf):
        raise UsageError("give exactly one of --file PATH or --hf REPO/FILE")
    fields: dict = {}
    if gguf:
        path = gguf.expanduser().resolve()
        if not path.is_file():
            raise UsageError(f"{gguf}: no such file")
        check_gguf(path, name)
        fields.update(file=path.name, gguf_path=str(path))
    else:
        parts = hf.strip("/").split("/")
        if len(parts) < 3 or not parts[-1].endswith(".gguf"):
            raise UsageError(f"--hf {hf}: give OWNER/REPO/FILE.gguf")
        fields.update(file=parts[-1], hf_repo="/".join(parts[:2]), hf_file="/".join(parts[2:]))
    optional = {"sha256": sha256, "chat_format": chat_format, "n_ctx": n_ctx,
                "max_tokens": max_tokens, "n_threads": n_threads,
                "rope_freq_base": rope_freq_base, "description": description}
    fields.update({k: v for k, v in optional.items() if v is not None})
    settings = load_settings()
    model = add_user_model(settings, name, fields)
    if as_json:
        emit_json({"added": name, **model.model_dump()})
    else:
        click.echo(f"added {name} ({model.source}); "
                   + ("ready" if model.usable(settings.models_dir) else model.how_to_get))


@models.command("remove")
@click.argument("name")
@json_option
def models_remove(name: str, as_json: bool) -> None:
    """Remove a model you added (its GGUF file stays where it is)."""
    remove_user_model(load_settings(), name)
    if as_json:
        emit_json({"removed": name})
    else:
        click.echo(f"removed {name} from your catalog")


COMMANDS = (models,)
