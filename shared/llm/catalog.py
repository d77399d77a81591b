"""The model catalog (models/catalog.toml) parsed into typed model settings.

A GGUF file comes from one of these sources: a file under the models directory (downloaded by
`ragfleet models pull` from its hub source, or put there by the user), a GGUF file anywhere on
this machine (`gguf_path`), a file inside an installed Python package, or an assembler function
that writes it. The shipped catalog (models/catalog.toml) is never edited: a user's entries
(`ragfleet models add`) live in the data directory's catalog.toml, layered over it.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import tomllib
from enum import Enum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared.config import Settings
from shared.errors import ModelUnavailable, UsageError
from shared.llm.package_parts import PackageParts

GGUF_MAGIC = b"GGUF"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class Availability(str, Enum):
    PRESENT = "present"
    ASSEMBLABLE = "assemblable"  # the assembler's package is installed; file written on first use
    NOT_DOWNLOADED = "not downloaded"
    NOT_INSTALLED = "not installed"
    MISSING = "missing"  # a gguf_path that is not there


class ModelSettings(BaseModel):
    """One catalog entry: where the file comes from and how to run it."""

    model_config = ConfigDict(extra="forbid")  # a misspelt setting is an error, not ignored

    name: str
    description: str = ""
    file: str = Field(description="GGUF file name")
    package: str | None = Field(default=None, description="import name of a package carrying it")
    assemble: str | None = Field(default=None, description="'module:function' writing the file")
    gguf_path: str | None = Field(default=None, description="a GGUF file anywhere, by absolute path")
    parts: PackageParts | None = Field(default=None,
                                       description="pieces in several packages, assembled by pull")
    hf_repo: str | None = Field(default=None, description="hub repository to pull the file from")
    hf_file: str | None = Field(default=None, description="file in hf_repo (default: file)")
    sha256: str | None = Field(default=None, pattern="^[0-9a-fA-F]{64}$")
    size: int | None = Field(default=None, gt=0, description="bytes, checked after a pull")
    install: str = Field(default="", description="how a user gets the file")
    quantized_from: str | None = Field(default=None, description="the model this was made from")
    quantization: str | None = Field(default=None, description="type made by models quantize")
    requantized: bool = Field(default=False, description="made from an already quantized file")
    n_ctx: int = Field(default=2048, gt=0)
    n_gpu_layers: int = -1
    # llama.cpp's CPU backend can copy weights of some types (Q4_0, Q4_K, IQ4_NL...) into an
    # interleaved layout in anonymous memory, the memory-mapped pages they came from staying
    # resident: measured on the 1.5B Q4_K_M (benchmarks/results/repack_speed.json) it took
    # 0.6 GB more (1.93 GB peak against 1.33) for no speed (prompt evaluation 12% slower,
    # decoding 4% faster). Off unless a model's entry turns it on; GPU offload ignores it.
    repack: bool = Field(default=False, description="CPU weight repacking (extra buffer types)")
    n_threads: int | None = Field(default=None, gt=0)
    chat_format: str | None = None
    # None: the GGUF's own RoPE base, as the model was trained. LangChain's LlamaCpp (the
    # study's stack) passes 10000 for every model unless told otherwise; set 10000 to run a
    # model exactly as the study did (BENCHMARKS.md: it changes the answers).
    rope_freq_base: float | None = Field(default=None, gt=0)
    # Sampling: the study stack's (LangChain's LlamaCpp) unless the catalog says otherwise.
    temperature: float = Field(default=0.01, ge=0)
    top_p: float = Field(default=1.0, gt=0, le=1)
    top_k: int = Field(default=40, ge=0)
    repeat_penalty: float = Field(default=1.1, gt=0,
                                  description="small models at temperature ~0 loop without it")
    repeat_last_n: int = Field(default=64, ge=0, description="tokens the repeat penalty sees")
    seed: int = Field(default=0, ge=0, description="fixed: the same batch gives the same answers")
    max_tokens: int = Field(default=256, gt=0)
    # Contexts per question when a batch names no --top-k: how many a model can use is a
    # matter of its size (BENCHMARKS.md, the context budget: a 135M or 270M model scores the
    # same on 2 as on 4, in ~40% less time; a 1.5B scores higher on 4).
    contexts: int = Field(default=4, ge=1, le=50,
                          description="contexts per question unless the batch sets --top-k")
    # The prompt template when a batch names no --prompt (unset: RAGFLEET_PROMPT). A base
    # model that ignores "answer in at most three sentences" may score better on another
    # wording (BENCHMARKS.md, the prompt's wording per model).
    prompt: str | None = Field(default=None, min_length=1,
                               description="prompt template unless the batch sets --prompt")
    parallel: int = Field(default=1, ge=1, le=64,
                          description="sequences decoded together (continuous batching)")
    kv_unified: bool = Field(default=False,
                             description="batching: one KV pool for all sequences, not one each")

    @model_validator(mode="after")
    def _one_source(self) -> ModelSettings:
        if sum(bool(s) for s in (self.package, self.assemble, self.gguf_path, self.parts,
                                 self.hf_repo)) > 1:
            raise ValueError("give one of package, assemble, gguf_path, parts or hf_repo")
        if self.gguf_path and not Path(self.gguf_path).is_absolute():
            raise ValueError("gguf_path must be an absolute path")
        if "/" in self.file or "\\" in self.file or self.file.startswith("."):
            raise ValueError("file must be a bare file name")
        return self

    def path(self, models_dir: Path) -> Path:
        """Where the GGUF file is (or will be, for assembled and downloaded models)."""
        if self.gguf_path:
            return Path(self.gguf_path)
        if self.package:
            spec = importlib.util.find_spec(self.package)  # finds, does not import
            if spec and spec.submodule_search_locations:
                return Path(next(iter(spec.submodule_search_locations))) / self.file
            return models_dir / self.file
        return models_dir / self.file

    def availability(self, models_dir: Path) -> Availability:
        if self.path(models_dir).is_file():
            return Availability.PRESENT
        if self.gguf_path:
            return Availability.MISSING
        if self.package:
            return Availability.NOT_INSTALLED
        if self.assemble:
            module = self.assemble.split(":", 1)[0]
            found = importlib.util.find_spec(module) is not None
            return Availability.ASSEMBLABLE if found else Availability.NOT_INSTALLED
        return Availability.NOT_DOWNLOADED

    @property
    def source(self) -> str:
        """Where the file comes from, for `ragfleet models`."""
        if self.gguf_path:
            return f"file {self.gguf_path}"
        if self.package:
            return f"package {self.package}"
        if self.assemble:
            return f"assembled by {self.assemble}"
        if self.hf_repo:
            return f"hub {self.hf_repo}/{self.hf_file or self.file}"
        if self.parts:
            return f"{self.parts.count} packages {self.parts.requirement_of(1)}..."
        return "models directory"

    @property
    def how_to_get(self) -> str:
        if self.hf_repo or self.parts:
            return f"ragfleet models pull {self.name}"
        return self.install or f"put {self.file} in the models directory"

    def usable(self, models_dir: Path) -> bool:
        return self.availability(models_dir) in (Availability.PRESENT, Availability.ASSEMBLABLE)

    def ensure_file(self, models_dir: Path) -> Path:
        """The path of a valid GGUF file, assembling it first when needed."""
        path = self.path(models_dir)
        state = self.availability(models_dir)
        if state is Availability.ASSEMBLABLE:
            module_name, func_name = self.assemble.split(":", 1)  # type: ignore[union-attr]
            models_dir.mkdir(parents=True, exist_ok=True)
            # Write beside, then rename: an interrupted assembly never looks like a model file.
            partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
            try:
                getattr(importlib.import_module(module_name), func_name)(str(partial))
                partial.replace(path)
            finally:
                partial.unlink(missing_ok=True)
        elif state is not Availability.PRESENT:
            raise ModelUnavailable(
                f"model {self.name!r}: file {self.file} is {state.value} ({self.how_to_get})"
            )
        check_gguf(path, self.name)
        return path


def check_gguf(path: Path, model_name: str) -> None:
    """Refuse a file that is not GGUF before llama.cpp gets it (it would fail less clearly)."""
    try:
        with path.open("rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise ModelUnavailable(f"model {model_name!r}: cannot read {path}: {exc.strerror}") from None
    if magic != GGUF_MAGIC:
        raise ModelUnavailable(f"model {model_name!r}: {path} is not a GGUF file")


class Catalog(BaseModel):
    models: dict[str, ModelSettings]
    user_models: set[str] = Field(default_factory=set, description="from the user's catalog")

    def get(self, name: str) -> ModelSettings:
        try:
            return self.models[name]
        except KeyError:
            known = ", ".join(sorted(self.models))
            raise ModelUnavailable(f"unknown model {name!r} (known: {known})") from None

    def names(self) -> list[str]:
        return list(self.models)


def load_catalog(path: Path, user_path: Path | None = None) -> Catalog:
    """Parse the shipped catalog and, over it, the user's; [defaults] of the shipped one apply
    to every model that does not set a value."""
    shipped = _read(path)
    user = _read(user_path) if user_path is not None and user_path.is_file() else {}
    defaults = shipped.get("defaults", {})
    if not shipped.get("models"):
        raise UsageError(f"model catalog {path} lists no [models.NAME] entries")
    models = {}
    for source, raw in ((path, shipped), (user_path, user)):
        for name, entry in raw.get("models", {}).items():
            models[name] = _entry(source, name, {**defaults, **entry})
    return Catalog(models=models, user_models=set(user.get("models", {})))


def load_fleet_catalog(settings: Settings) -> Catalog:
    """The catalog this machine's commands and pools use: shipped, then the user's."""
    return load_catalog(settings.catalog_path, settings.user_catalog_path)


def _read(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"model catalog not found: {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"model catalog {path} is not valid TOML: {exc}") from None


def _entry(path: Path, name: str, fields: dict) -> ModelSettings:
    try:
        return ModelSettings(name=name, **fields)
    except (ValidationError, TypeError) as exc:
        raise UsageError(f"model catalog {path}: model {name!r}: {_first_error(exc)}") from None


def add_user_model(settings: Settings, name: str, fields: dict) -> ModelSettings:
    """Validate an entry as the catalog would and write it to the user's catalog (atomically).
    A shipped model's name cannot be taken."""
    catalog = load_fleet_catalog(settings)
    if name in catalog.models and name not in catalog.user_models:
        raise UsageError(f"model {name!r} is in the shipped catalog; choose another name")
    if not NAME_PATTERN.match(name):
        raise UsageError(f"bad model name {name!r}: use 1-64 letters, digits, '.', '_' or '-'")
    defaults = _read(settings.catalog_path).get("defaults", {})
    model = _entry(settings.user_catalog_path, name, {**defaults, **fields})
    entries = _user_entries(settings)
    entries[name] = fields
    _write_user_catalog(settings, entries)
    return model


def remove_user_model(settings: Settings, name: str) -> None:
    entries = _user_entries(settings)
    if name not in entries:
        if name in load_fleet_catalog(settings).models:
            raise UsageError(f"model {name!r} is in the shipped catalog; only models you added "
                             "can be removed")
        raise ModelUnavailable(f"unknown model {name!r}")
    del entries[name]
    _write_user_catalog(settings, entries)


def _user_entries(settings: Settings) -> dict[str, dict]:
    path = settings.user_catalog_path
    return dict(_read(path).get("models", {})) if path.is_file() else {}


def _write_user_catalog(settings: Settings, entries: dict[str, dict]) -> None:
    lines = ["# Your models, layered over the shipped catalog (written by `ragfleet models add`)."]
    for name, fields in entries.items():
        lines.append(f"\n[models.{json.dumps(name)}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in fields.items()]
    path = settings.user_catalog_path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text("\n".join(lines) + "\n", encoding="utf-8")
    partial.replace(path)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)  # a JSON string is a TOML basic string


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        return f"{'.'.join(str(p) for p in first.get('loc', ()))}: {first['msg']}"
    return str(exc)


def pool_threads(model: ModelSettings, cores: int, pools: int, override: int | None) -> int:
    """Thread budget: llama.cpp slows down several times when the threads of all model
    processes exceed the cores, so pools share them: cores // pools, at least 1."""
    if override:
        return override
    if model.n_threads:
        return model.n_threads
    return max(1, cores // max(1, pools))
