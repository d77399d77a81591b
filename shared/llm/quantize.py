"""New quantizations of a catalog model, made by llama.cpp's own quantizer.

The quantizer runs in a child process (`python -m shared.llm.quantize`): llama.cpp aborts the
process on some bad inputs, and its log lines ("[  12/ 272] blk.1.attn_q.weight ...") are the
progress the parent reports. The output is written beside the models directory's files and
renamed under its name only when the quantizer succeeded: an interrupted, failed or disk-full
run leaves nothing under the new name.

From an already quantized file (Q4_K_M, say) llama.cpp requantizes: the result is worse than
the same type made from F16/BF16 weights, since the second rounding works on the first's error.
Callers say so and the catalog entry records it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from shared.errors import RagfleetError, UsageError

# Nominal bits per weight of each type llama.cpp's quantizer writes (its quantize tool's table;
# the K mixes keep some tensors at a higher type). Used to estimate the output's size.
BITS_PER_WEIGHT = {
    "Q2_K": 3.35, "Q3_K_S": 3.5, "Q3_K_M": 3.91, "Q3_K_L": 4.27,
    "Q4_0": 4.55, "Q4_1": 5.0, "Q4_K_S": 4.58, "Q4_K_M": 4.89,
    "Q5_0": 5.54, "Q5_1": 6.0, "Q5_K_S": 5.54, "Q5_K_M": 5.69, "Q6_K": 6.59, "Q8_0": 8.5,
    "IQ3_XXS": 3.06, "IQ3_S": 3.44, "IQ3_M": 3.66, "IQ4_NL": 4.5, "IQ4_XS": 4.25,
    "TQ1_0": 1.69, "TQ2_0": 2.06, "F16": 16.0, "BF16": 16.0, "F32": 32.0,
}
# llama.cpp's quantize tool refuses these without an importance matrix (made from a calibration
# text); ragfleet does not make one.
NEED_IMATRIX = ("IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "Q2_K_S")
UNQUANTIZED = ("F32", "F16", "BF16")
SIZE_MARGIN = 1.3  # the estimate is nominal; small models keep a larger share at high precision
PROGRESS = re.compile(r"\[\s*(\d+)\s*/\s*(\d+)\s*\]")


def normalise_type(name: str) -> str:
    """'q2_k' -> 'Q2_K'; an unknown type or one needing an importance matrix is a UsageError."""
    qtype = name.strip().upper()
    if qtype in NEED_IMATRIX:
        raise UsageError(f"quantization type {qtype} needs an importance matrix, which ragfleet "
                         f"does not make; choose one of {', '.join(supported_types())}")
    if qtype not in supported_types():
        raise UsageError(f"unknown quantization type {name!r}; choose one of "
                         f"{', '.join(supported_types())}")
    return qtype


def supported_types() -> list[str]:
    return [t for t in BITS_PER_WEIGHT if _ftype_constant(t) is not None]


def _ftype_constant(qtype: str) -> int | None:
    import llama_cpp

    name = "LLAMA_FTYPE_ALL_F32" if qtype == "F32" else f"LLAMA_FTYPE_MOSTLY_{qtype}"
    return getattr(llama_cpp, name, None)


def file_type_of(path: Path) -> str | None:
    """The type a GGUF file's weights are mostly in ('Q4_K_M', 'F16'...), from its metadata."""
    from shared.llm.vocab import quantization, vocab_only

    try:
        with vocab_only(path) as model:
            qtype = quantization(model.metadata())
    except (ValueError, RuntimeError):
        return None
    return None if qtype == "unknown" else qtype.removeprefix("ALL_")


def estimated_size(source: Path, source_type: str | None, qtype: str) -> int:
    """Bytes the output may take: the source scaled by bits per weight, with a margin. A source
    of unknown type counts as the smallest common one (Q2_K), so the estimate stays high."""
    source_bits = BITS_PER_WEIGHT.get(source_type or "", BITS_PER_WEIGHT["Q2_K"])
    ratio = BITS_PER_WEIGHT[qtype] / source_bits
    return int(source.stat().st_size * ratio * SIZE_MARGIN) + 64 * 2**20


def check_space(model_name: str, source: Path, source_type: str | None, qtypes: list[str],
                folder: Path) -> None:
    """Refuse before writing anything when the outputs may not fit in `folder`."""
    need = sum(estimated_size(source, source_type, qtype) for qtype in qtypes)
    free = shutil.disk_usage(folder).free
    if free < need:
        raise RagfleetError(f"quantizing {model_name!r} to {', '.join(qtypes)} needs about "
                            f"{need / 2**20:.0f} MB free in {folder}, {free / 2**20:.0f} MB is")


@dataclass(frozen=True)
class Quantized:
    path: Path
    size: int
    source_type: str | None
    requantized: bool


def quantize(model_name: str, source: Path, source_type: str | None, target: Path, qtype: str,
             threads: int, progress: Callable[[int, int], None] | None = None) -> Quantized:
    """Write `target` as `qtype` from `source` (of `source_type`, from file_type_of); nothing
    is left under `target` on failure."""
    if target.exists():
        raise UsageError(f"{target} exists; remove it or choose another name")
    requantized = source_type not in UNQUANTIZED
    check_space(model_name, source, source_type, [qtype], target.parent)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    command = [sys.executable, "-m", "shared.llm.quantize", str(source), str(partial), qtype,
               str(threads), "1" if requantized else "0"]
    tail: list[str] = []
    try:
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                 text=True, errors="replace")
        for line in child.stderr:  # type: ignore[union-attr]
            if line.strip():
                tail = (tail + [line.strip()])[-20:]
            if progress and (step := PROGRESS.search(line)):
                progress(int(step.group(1)), int(step.group(2)))
        code = child.wait()
        # llama.cpp's writer may not notice a write that failed for want of space
        if code == 0 and shutil.disk_usage(target.parent).free < 2**20:
            tail.append("no space left on the device")
            code = 1
        if code != 0 or not partial.is_file():
            raise RagfleetError(f"quantizing {model_name!r} to {qtype} failed: "
                                f"{_reason(tail, code, partial.parent)}")
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return Quantized(target, target.stat().st_size, source_type, requantized)


def _reason(tail: list[str], code: int, folder: Path) -> str:
    text = " ".join(tail).lower()
    if "no space" in text or "enospc" in text or shutil.disk_usage(folder).free < 2**20:
        return f"no space left in {folder}"
    errors = [line for line in tail if "error" in line.lower() or "failed" in line.lower()]
    return (errors or tail or [f"exit code {code}"])[-1][:300]


def _run_quantizer(source: str, target: str, qtype: str, threads: int, requantize: bool) -> int:
    """In the child: llama.cpp's quantizer, its log lines on stderr."""
    import ctypes

    import llama_cpp

    @llama_cpp.llama_log_callback
    def to_stderr(level, text, user_data):
        sys.stderr.write(text.decode("utf-8", "replace"))
        sys.stderr.flush()

    llama_cpp.llama_log_set(to_stderr, ctypes.c_void_p(0))
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = _ftype_constant(qtype)
    params.nthread = threads
    params.allow_requantize = requantize
    code = llama_cpp.llama_model_quantize(source.encode(), target.encode(), ctypes.byref(params))
    if code != 0:
        sys.stderr.write(f"error: llama_model_quantize returned {code}\n")
    return 1 if code != 0 else 0


if __name__ == "__main__":
    src, dst, type_name, n_threads, requant = sys.argv[1:6]
    sys.exit(_run_quantizer(src, dst, type_name, int(n_threads), requant == "1"))
