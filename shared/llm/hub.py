"""`ragfleet models pull`: a catalog entry's GGUF from a model hub, by huggingface_hub (which
honours HF_ENDPOINT, HF_TOKEN and HF_HUB_OFFLINE and resumes a partial download).

The file is downloaded beside the models directory's files (in `.downloads/`), checked (GGUF
magic, size and sha256 where the catalog gives them) and only then moved under the model's file
name in one rename: an interrupted or bad download never looks like a model.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from shared.errors import EXIT_UNAVAILABLE, RagfleetError, UsageError
from shared.llm.catalog import GGUF_MAGIC, ModelSettings

STAGING = ".downloads"


class HubUnavailable(RagfleetError):
    """The hub cannot be reached (offline, unreachable, timed out)."""

    exit_code = EXIT_UNAVAILABLE


class BadDownload(RagfleetError):
    """The file arrived but is not what the catalog says (magic, size or checksum)."""


def pull(model: ModelSettings, models_dir: Path, progress: bool = False) -> Path:
    """Download, check and install the model's file; returns its path."""
    if not model.hf_repo:
        raise UsageError(f"model {model.name!r} has no hub source to pull from ({model.install})")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars
    from huggingface_hub.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # its retry warnings are not the user's one line

    staging = models_dir / STAGING
    target = models_dir / model.file
    try:
        staging.mkdir(parents=True, exist_ok=True)
        (enable_progress_bars if progress else disable_progress_bars)()
        got = Path(hf_hub_download(model.hf_repo, model.hf_file or model.file,
                                   local_dir=staging))
    except OSError as exc:
        raise _explain(f"model {model.name!r}", f"{model.hf_repo}/{model.hf_file or model.file}",
                       exc) from None
    except Exception as exc:  # httpx errors and the like: the hub did not answer properly
        raise HubUnavailable(f"model {model.name!r}: the hub did not answer: "
                             f"{_one_line(exc)}") from None
    try:
        check_download(model, got)
    except BadDownload:
        got.unlink(missing_ok=True)  # a wrong file must not be resumed or used
        raise
    os.replace(got, target)
    shutil.rmtree(staging, ignore_errors=True)
    return target


@dataclass(frozen=True)
class HubFile:
    name: str
    size: int | None
    sha256: str | None

    @property
    def quantization(self) -> str | None:
        return quant_type_of(self.name)


# The type's token ends the file's stem: 'x.Q5_K_M.gguf', 'x-q4_k_m.gguf', 'x_IQ3_XS.gguf',
# 'x-f16.gguf'; a split file carries '-00001-of-00003' after it.
QUANT_IN_NAME = re.compile(r"(?:^|[._-])(I?Q\d(?:_[A-Z0-9]{1,3})*|B?F16|F32|TQ\d_0)"
                           r"(-\d{5}-of-\d{5})?\.gguf$", re.IGNORECASE)


def quant_type_of(filename: str) -> str | None:
    """The quantization type a GGUF file's name declares ('Q5_K_M'), or None."""
    found = QUANT_IN_NAME.search(filename.rsplit("/", 1)[-1])
    return found.group(1).upper() if found else None


def list_gguf_files(repo: str) -> list[HubFile]:
    """The GGUF files of a hub repository, with the size and sha256 the hub gives for each."""
    from huggingface_hub import HfApi

    try:
        info = HfApi().model_info(repo, files_metadata=True)
    except OSError as exc:
        raise _explain(f"listing {repo}", repo, exc) from None
    except Exception as exc:  # httpx errors and the like: the hub did not answer properly
        raise HubUnavailable(f"the hub did not list {repo}: {_one_line(exc)}") from None
    return [HubFile(s.rfilename, s.size, s.lfs.sha256 if s.lfs else None)
            for s in info.siblings or [] if s.rfilename.lower().endswith(".gguf")]


def choose_quant(repo: str, files: list[HubFile], qtype: str) -> HubFile:
    """The one file of `qtype` in the listing; none, several or a split file is a UsageError
    that names what there is."""
    wanted = qtype.strip().upper()
    matches = [f for f in files if f.quantization == wanted]
    if not matches:
        types = sorted({f.quantization for f in files if f.quantization})
        raise UsageError(f"{repo} has no {wanted} GGUF file; it has "
                         + (", ".join(types) if types else "no GGUF file with a type in its name"))
    if any(re.search(r"-\d{5}-of-\d{5}\.gguf$", f.name) for f in matches):
        raise UsageError(f"{repo}'s {wanted} model is split over {len(matches)} files; ragfleet "
                         "pulls single-file GGUFs only")
    if len(matches) > 1:
        names = ", ".join(f.name for f in matches)
        raise UsageError(f"{repo} has several {wanted} files ({names}); add the one you want "
                         "with `ragfleet models add NAME --hf REPO/FILE`")
    return matches[0]


def check_download(model: ModelSettings, path: Path) -> None:
    with path.open("rb") as fh:
        if fh.read(4) != GGUF_MAGIC:
            raise BadDownload(f"model {model.name!r}: the downloaded file is not a GGUF file")
    size = path.stat().st_size
    if model.size is not None and size != model.size:
        raise BadDownload(f"model {model.name!r}: downloaded {size} bytes, the catalog says "
                          f"{model.size}")
    if model.sha256:
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
        if digest.hexdigest() != model.sha256.lower():
            raise BadDownload(f"model {model.name!r}: sha256 {digest.hexdigest()} does not match "
                              f"the catalog's {model.sha256}")


def _explain(subject: str, where: str, exc: OSError) -> RagfleetError:
    """One line for each way a download (or a listing) fails, with the right exit code;
    `subject` starts it ("model 'x'"), `where` names what was asked for."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
    )

    if isinstance(exc, GatedRepoError):
        return UsageError(f"{subject}: {where} is gated: accept its terms and set "
                          "HF_TOKEN")
    if isinstance(exc, RepositoryNotFoundError | RemoteEntryNotFoundError):
        return UsageError(f"{subject}: {where} was not found on the hub (or needs "
                          "HF_TOKEN)")
    if isinstance(exc, HfHubHTTPError):
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status in (401, 403, 404):
            return UsageError(f"{subject}: the hub answered {status} for {where}")
        return HubUnavailable(f"{subject}: the hub answered {status} for {where}")
    if isinstance(exc, OfflineModeIsEnabled | LocalEntryNotFoundError):
        return HubUnavailable(f"{subject}: cannot reach the hub for {where} "
                              "(offline, or HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set)")
    if exc.errno == errno.ENOSPC:
        return RagfleetError(f"{subject}: no space left on the device for {where}")
    return HubUnavailable(f"{subject}: download of {where} failed: {_one_line(exc)}")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return "".join(c for c in text if c.isprintable())[:300]
