"""The model catalog (models/catalog.toml) parsed into typed model settings.

A GGUF file comes from one of three sources: a file under the models directory (the user
downloaded it), a file inside an installed Python package, or an assembler function that writes it.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import tomllib
from enum import Enum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared.errors import ModelUnavailable, UsageError

GGUF_MAGIC = b"GGUF"


class Availability(str, Enum):
    PRESENT = "present"
    ASSEMBLABLE = "assemblable"  # the assembler's package is installed; file written on first use
    NOT_DOWNLOADED = "not downloaded"
    NOT_INSTALLED = "not installed"


class ModelSettings(BaseModel):
    """One catalog entry: where the file comes from and how to run it."""

    model_config = ConfigDict(extra="forbid")  # a misspelt setting is an error, not ignored

    name: str
    description: str = ""
    file: str = Field(description="GGUF file name")
    package: str | None = Field(default=None, description="import name of a package carrying it")
    assemble: str | None = Field(default=None, description="'module:function' writing the file")
    install: str = Field(default="", description="how a user gets the file")
    n_ctx: int = Field(default=2048, gt=0)
    n_gpu_layers: int = -1
    n_threads: int | None = Field(default=None, gt=0)
    chat_format: str | None = None
    # Sampling: the study stack's (LangChain's LlamaCpp) unless the catalog says otherwise.
    temperature: float = Field(default=0.01, ge=0)
    top_p: float = Field(default=1.0, gt=0, le=1)
    top_k: int = Field(default=40, ge=0)
    repeat_penalty: float = Field(default=1.1, gt=0,
                                  description="small models at temperature ~0 loop without it")
    repeat_last_n: int = Field(default=64, ge=0, description="tokens the repeat penalty sees")
    seed: int = Field(default=0, ge=0, description="fixed: the same batch gives the same answers")
    max_tokens: int = Field(default=512, gt=0)
    parallel: int = Field(default=1, ge=1, le=64,
                          description="sequences decoded together (continuous batching)")
    kv_unified: bool = Field(default=False,
                             description="batching: one KV pool for all sequences, not one each")

    @model_validator(mode="after")
    def _one_source(self) -> ModelSettings:
        if self.package and self.assemble:
            raise ValueError("give either package or assemble, not both")
        if "/" in self.file or "\\" in self.file or self.file.startswith("."):
            raise ValueError("file must be a bare file name")
        return self

    def path(self, models_dir: Path) -> Path:
        """Where the GGUF file is (or will be, for assembled and downloaded models)."""
        if self.package:
            spec = importlib.util.find_spec(self.package)  # finds, does not import
            if spec and spec.submodule_search_locations:
                return Path(next(iter(spec.submodule_search_locations))) / self.file
            return models_dir / self.file
        return models_dir / self.file

    def availability(self, models_dir: Path) -> Availability:
        if self.path(models_dir).is_file():
            return Availability.PRESENT
        if self.package:
            return Availability.NOT_INSTALLED
        if self.assemble:
            module = self.assemble.split(":", 1)[0]
            found = importlib.util.find_spec(module) is not None
            return Availability.ASSEMBLABLE if found else Availability.NOT_INSTALLED
        return Availability.NOT_DOWNLOADED

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
                f"model {self.name!r}: file {self.file} is {state.value} ({self.install})"
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

    def get(self, name: str) -> ModelSettings:
        try:
            return self.models[name]
        except KeyError:
            known = ", ".join(sorted(self.models))
            raise ModelUnavailable(f"unknown model {name!r} (known: {known})") from None

    def names(self) -> list[str]:
        return list(self.models)


def load_catalog(path: Path) -> Catalog:
    """Parse the catalog file; [defaults] apply to every model that does not set a value."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"model catalog not found: {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"model catalog {path} is not valid TOML: {exc}") from None
    defaults = raw.get("defaults", {})
    entries = raw.get("models", {})
    if not entries:
        raise UsageError(f"model catalog {path} lists no [models.NAME] entries")
    models = {}
    for name, entry in entries.items():
        try:
            models[name] = ModelSettings(name=name, **{**defaults, **entry})
        except (ValidationError, TypeError) as exc:
            detail = _first_error(exc)
            raise UsageError(f"model catalog {path}: model {name!r}: {detail}") from None
    return Catalog(models=models)


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
