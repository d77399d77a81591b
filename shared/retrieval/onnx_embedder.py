"""all-MiniLM-L6-v2 on ONNX Runtime: the bundled weights exported once to ONNX, run without torch.

The fp32 export is exact: it is the same network, mean pooling and L2 normalisation as the
sentence-transformers model (its modules.json: Transformer, mean Pooling, Normalize), and the
export is checked against it before it is kept (vectors within 1e-4). The int8 variant is ONNX
Runtime's dynamic quantization of the export's MatMul weights (per channel): faster, about 0.99
cosine to fp32, so for retrieval only.

The export lives in a cache directory (never in the repository), keyed by a hash of the weights
and configuration files and of the exporter's versions:
    ~/.cache/ragfleet/onnx/all-MiniLM-L6-v2-<hash>/model.onnx  (XDG_CACHE_HOME is honoured)
`make install` makes it (`python -m shared.retrieval.onnx_embedder export`); otherwise the first
process that needs it does, in a child process (so a worker never loads torch for it), under a
file lock, written to a temporary file and renamed. A failed export is remembered beside it
for an hour, so each worker process does not try again; `export` on the command line does.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

import numpy as np

from shared.retrieval.embeddings import EMBEDDING_MODEL, model_path
from shared.retrieval.priority import idle_priority

log = logging.getLogger(__name__)

EXPORT_FORMAT = 1  # bump when the exported graph changes: a new cache directory
OPSET = 17
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT = "sentence_embedding"
PRECISIONS = ("fp32", "int8")
EXPORT_TIMEOUT_S = 600
RETRY_FAILED_AFTER_S = 3600  # a failed export is tried again by a process this much later
MODULE = "shared.retrieval.onnx_embedder"
# texts per run: measured fastest on one core (2: 35 chunks/s, 8: 30, 64: 21 on 1000-character
# chunks; benchmarks/bench_embedders.py)
BATCH_SIZE = 2
# int8 quantizes activations with one scale per run, so a text's vector would depend on the
# texts run with it (up to 0.02 apart) and on how ingestion's windows happened to split: one
# text per run keeps a chunk's vector reproducible and equal to its query-time vector, at no
# measured cost (160 chunks: 4.5-4.7 s either way on 2 cores)
INT8_BATCH_SIZE = 1
STEP_TEXTS = 32  # about how often embed() reports progress and asks how many cores it may use
# the model files the graph is made of (the tokenizer is read at run time, not exported)
KEY_FILES = ("model.safetensors", "config.json", "modules.json", "1_Pooling/config.json",
             "sentence_bert_config.json")
# an exact export: every vector within this of sentence-transformers' (cosines within ~2x this)
EXACT_ATOL = 1e-4
# texts the export is checked on: short, long (truncated), punctuation, non-ASCII, padded
PROBES = [
    "What is the deductible of the Northwind Standard plan?",
    "The annual deductible is $2,000 per person and $4,000 per family for in-network care. " * 20,
    "x",
    "Dental cleanings are covered twice a year; orthodontics are not covered (see page 12).",
    "Übersetzung — naïve café façade, 東京, emoji 🙂, tabs\tand\nnewlines",
    "in-network",
]


class OnnxUnavailable(Exception):
    """ONNX Runtime, or an export of the model, cannot be had here."""


# -- where the export lives ---------------------------------------------------------------------

def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ragfleet" / "onnx"


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


_keys: dict[tuple, str] = {}


def export_key(model_dir: Path) -> str:
    """Hash of the model files and the exporter's versions (torch, transformers, onnx)."""
    stats = tuple((name, *_stat(model_dir / name)) for name in KEY_FILES)
    versions = {p: _version(p) for p in ("torch", "transformers", "onnx")}
    memo = (str(model_dir), stats, tuple(versions.items()))
    if memo not in _keys:
        digest = hashlib.sha256(json.dumps({"format": EXPORT_FORMAT, "opset": OPSET,
                                            "versions": versions}, sort_keys=True).encode())
        for name in KEY_FILES:
            path = model_dir / name
            digest.update(name.encode() + b"\0")
            if path.exists():
                with path.open("rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        digest.update(block)
        _keys[memo] = digest.hexdigest()[:16]
    return _keys[memo]


def _stat(path: Path) -> tuple:
    try:
        st = path.stat()
        return st.st_size, st.st_mtime_ns
    except OSError:
        return None, None


def export_dir(model_dir: Path | None = None) -> Path:
    model_dir = Path(model_dir or model_path())
    return cache_root() / f"{EMBEDDING_MODEL}-{export_key(model_dir)}"


def model_file(precision: str, model_dir: Path | None = None) -> Path:
    """The ONNX file of a precision (int8 is made by this ONNX Runtime's quantizer)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: one of {PRECISIONS}")
    folder = export_dir(model_dir)
    if precision == "fp32":
        return folder / "model.onnx"
    return folder / f"model-int8-ort{_version('onnxruntime')}.onnx"


def _failed_marker(path: Path) -> Path:
    return path.with_name(path.name + ".failed")


@contextmanager
def _file_lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_model(precision: str = "fp32", retry_failed: bool = False,
                 timeout_s: float = EXPORT_TIMEOUT_S) -> Path:
    """The ONNX file of a precision, exported now (in a child process) if it is not cached.
    Raises OnnxUnavailable with the reason when it cannot be made (and, unless retry_failed,
    when an earlier try failed)."""
    path = model_file(precision)
    if path.exists():
        return path
    if precision == "int8":
        ensure_model("fp32", retry_failed, timeout_s)
    marker = _failed_marker(path)
    with _file_lock(path.parent / ".export.lock"):
        if path.exists():  # another process made it while this one waited
            return path
        if marker.exists() and not retry_failed and \
                time.time() - marker.stat().st_mtime < RETRY_FAILED_AFTER_S:
            raise OnnxUnavailable(f"its export failed before ({marker}): "
                                  f"{marker.read_text().strip()}; `python -m {MODULE} export` "
                                  "(make install) tries again")
        marker.unlink(missing_ok=True)
        log.info("exporting %s to ONNX (%s) into %s", EMBEDDING_MODEL, precision, path.parent)
        started = time.perf_counter()
        try:
            done = subprocess.run(build_command(precision, path), capture_output=True, text=True,
                                  timeout=timeout_s, env={**os.environ, **_OFFLINE})
            reason = _last_line(done.stderr) or f"exit status {done.returncode}"
            ok = done.returncode == 0 and path.exists()
        except (OSError, subprocess.TimeoutExpired) as exc:
            ok, reason = False, f"{type(exc).__name__}: {exc}"
        if not ok:
            marker.write_text(reason + "\n")
            raise OnnxUnavailable(f"its export failed: {reason}")
        log.info("exported %s in %.1f s", path.name, time.perf_counter() - started)
    return path


_OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}


def build_command(precision: str, target: Path) -> list[str]:
    """The child process that builds one file (a function, so tests can make it fail)."""
    return [sys.executable, "-m", MODULE, "build", "--precision", precision, "--to", str(target)]


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


# -- building (in the child process) ------------------------------------------------------------

def check_pooling(model_dir: Path) -> None:
    """The graph does mean pooling and L2 normalisation: refuse a model configured otherwise."""
    modules = [m["type"].rsplit(".", 1)[-1]
               for m in json.loads((model_dir / "modules.json").read_text())]
    pooling = json.loads((model_dir / "1_Pooling" / "config.json").read_text())
    modes = {k: v for k, v in pooling.items() if k.startswith("pooling_mode_")}
    if modules != ["Transformer", "Pooling", "Normalize"] or \
            {k for k, v in modes.items() if v} != {"pooling_mode_mean_tokens"}:
        raise OnnxUnavailable(f"the model's modules {modules} and pooling {modes} are not "
                              "Transformer + mean pooling + Normalize, which the export does")


def max_seq_length(model_dir: Path) -> int:
    return int(json.loads((model_dir / "sentence_bert_config.json").read_text())["max_seq_length"])


def build_fp32(target: Path, model_dir: Path | None = None) -> dict:
    """Export the transformer with mean pooling and normalisation to `target`, check it against
    sentence-transformers on PROBES, then move it into place. Needs torch and onnx."""
    import warnings

    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel

    model_dir = Path(model_dir or model_path())
    check_pooling(model_dir)
    reference = SentenceTransformer(str(model_dir), device="cpu")
    # eager attention: a plain graph of MatMul/Softmax that ONNX Runtime fuses and quantizes
    bert = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()

    class Pooled(torch.nn.Module):
        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / torch.clamp(mask.sum(1), min=1e-9)
            return torch.nn.functional.normalize(mean, p=2, dim=1)

    tokenizer = load_tokenizer(model_dir)
    sample = encode(tokenizer, PROBES[:2])
    axes = {0: "batch", 1: "tokens"}
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
    try:
        tmp = work / "model.onnx"
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the tracer's notes on transformers' mask code
            # the TorchScript exporter: needs only `onnx`, not onnxscript
            torch.onnx.export(Pooled(bert), tuple(torch.from_numpy(sample[k]) for k in INPUTS),
                              str(tmp), dynamo=False, input_names=list(INPUTS),
                              output_names=[OUTPUT], opset_version=OPSET,
                              dynamic_axes={**{k: axes for k in INPUTS}, OUTPUT: {0: "batch"}})
        check = compare(tmp, reference, tokenizer)
        if not check["max_abs_diff"] <= EXACT_ATOL:
            raise OnnxUnavailable(f"the export differs from sentence-transformers by "
                                  f"{check['max_abs_diff']:.2e} (> {EXACT_ATOL})")
        report = {"precision": "fp32", "model": EMBEDDING_MODEL, "opset": OPSET,
                  "versions": {p: _version(p) for p in ("torch", "transformers", "onnx",
                                                        "onnxruntime")}, **check}
        _write_atomic(target.with_suffix(".json"), json.dumps(report, indent=2).encode())
        os.replace(tmp, target)
        return report
    finally:
        shutil.rmtree(work, ignore_errors=True)


def build_int8(target: Path, source: Path) -> dict:
    """Dynamic int8 quantization of the fp32 export's MatMul weights, per output channel (per
    tensor measured 0.93 cosine to fp32 at worst, per channel 0.99)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    work = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
    try:
        tmp = work / "model.onnx"
        quantize_dynamic(str(source), str(tmp), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul"],
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        tokenizer = load_tokenizer(Path(model_path()))
        exact = _session(str(source), 1).run(None, dict(encode(tokenizer, PROBES)))[0]
        approx = _session(str(tmp), 1).run(None, dict(encode(tokenizer, PROBES)))[0]
        cosines = (exact * approx).sum(1)
        if cosines.min() < 0.9:
            raise OnnxUnavailable(f"the int8 model is too far from fp32 (cosine {cosines.min():.3f})")
        report = {"precision": "int8", "model": EMBEDDING_MODEL,
                  "onnxruntime": _version("onnxruntime"),
                  "probe_cosine_to_fp32_min": float(cosines.min())}
        _write_atomic(target.with_suffix(".json"), json.dumps(report, indent=2).encode())
        os.replace(tmp, target)
        return report
    finally:
        shutil.rmtree(work, ignore_errors=True)


def compare(onnx_path: Path, reference, tokenizer) -> dict:
    """The ONNX model against sentence-transformers on PROBES, in one batch and one by one."""
    session = _session(str(onnx_path), 1)
    expected = reference.encode(PROBES, normalize_embeddings=True, convert_to_numpy=True,
                                show_progress_bar=False)
    together = session.run(None, dict(encode(tokenizer, PROBES)))[0]
    alone = np.vstack([session.run(None, dict(encode(tokenizer, [t])))[0] for t in PROBES])
    diff = max(float(np.abs(together - expected).max()), float(np.abs(alone - expected).max()))
    pairs = [(i, j) for i in range(len(PROBES)) for j in range(i + 1, len(PROBES))]
    cos = max(abs(float(together[i] @ together[j]) - float(expected[i] @ expected[j]))
              for i, j in pairs)
    return {"max_abs_diff": diff, "max_cosine_diff": cos, "probes": len(PROBES)}


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


# -- running ------------------------------------------------------------------------------------

def load_tokenizer(model_dir: Path):
    """The model's own fast tokenizer (tokenizer.json), truncating and padding as
    sentence-transformers does: at max_seq_length (256 here, not the file's 128), to the longest
    text of a batch."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=max_seq_length(model_dir))
    pad = tokenizer.token_to_id("[PAD]")
    tokenizer.enable_padding(pad_id=0 if pad is None else pad, pad_token="[PAD]")
    return tokenizer


def encode(tokenizer, texts: list[str]) -> dict[str, np.ndarray]:
    # sentence-transformers strips each text before tokenizing
    encodings = tokenizer.encode_batch([str(t).strip() for t in texts])
    return {"input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64)}


def _session(path: str, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only
    # threads sleep between batches instead of spinning: the cores belong to the model pools
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def default_threads() -> int:
    """What torch would use: OMP_NUM_THREADS (a worker sets 1), else every core."""
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "")))
    except ValueError:
        return os.cpu_count() or 1


class OnnxEmbedder:
    """Embedder's interface (shared.retrieval.embeddings) on ONNX Runtime: normalised vectors,
    texts embedded longest first in small batches. One session of one thread; `threads` (asked
    before each batch) says how many batches may run at once, each on its own core (ONNX
    Runtime runs one session from several threads; small batches on one core each are faster
    than large ones split across cores: the attention of a small batch stays in cache)."""

    backend = "onnx"
    name = EMBEDDING_MODEL

    def __init__(self, precision: str = "fp32", batch_size: int | None = None,
                 path: Path | None = None):
        try:
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            raise OnnxUnavailable(f"onnxruntime is not installed ({exc})") from None
        self.precision = precision
        self.id = f"{self.backend}-{precision}:{self.name}"
        self.batch_size = batch_size or (INT8_BATCH_SIZE if precision == "int8" else BATCH_SIZE)
        self.path = Path(path) if path else ensure_model(precision)
        self.tokenizer = load_tokenizer(Path(model_path()))
        self.session = _session(str(self.path), 1)
        self.dim = int(self.session.get_outputs()[0].shape[-1])
        self._pool = None
        self._pool_lock = threading.Lock()

    def _run(self, texts: list[str]) -> np.ndarray:
        return self.session.run(None, encode(self.tokenizer, texts))[0]

    def _executor(self):
        from concurrent.futures import ThreadPoolExecutor

        with self._pool_lock:
            if self._pool is None:
                # only batch embedding (an ingestion) runs here: queries and scores run on
                # the caller's thread. Idle priority: answering pools on this host keep
                # their cores, and an idle host gives these threads every core.
                self._pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 1,
                                                thread_name_prefix="onnx-embed",
                                                initializer=idle_priority)
            return self._pool

    def embed(self, texts: list[str], progress=None,
              threads: Callable[[], int] | None = None) -> np.ndarray:
        """float32 (len(texts), dim). `progress(done, total)` is called every STEP_TEXTS texts
        or so, `threads` (how many cores it may use now, see Embedder.embed; it may wait while
        model pools generate) before every batch; each may be a Redis call. Without `threads`:
        OMP_NUM_THREADS (a worker's 1), else every core."""
        from concurrent.futures import FIRST_COMPLETED, wait

        out = np.empty((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        step = max(1, STEP_TEXTS // self.batch_size)  # batches between two calls
        cores = os.cpu_count() or 1

        def allowed() -> int:
            return max(1, min(cores, threads() if threads else default_threads()))

        if len(batches) <= 1 or (threads is None and default_threads() == 1):
            for number, rows in enumerate(batches, start=1):  # on this thread: a query, a score
                out[rows] = self._run([texts[i] for i in rows])
                if progress and (number % step == 0 or number == len(batches)):
                    progress(min(number * self.batch_size, len(texts)), len(texts))
            return out
        pool, running, queue = self._executor(), {}, list(reversed(batches))
        done = finished_batches = 0
        cap = allowed()
        while queue or running:
            while queue and len(running) < cap:
                rows = queue.pop()
                running[pool.submit(self._run, [texts[i] for i in rows])] = rows
                # asked before every batch (one Redis round trip, ~0.1 ms, against a batch's
                # ~20 ms): an answer starting on this host waits for at most the batches in flight
                cap = allowed()
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                rows = running.pop(future)
                out[rows] = future.result()
                done += len(rows)
                finished_batches += 1
                if progress and (finished_batches % step == 0 or done == len(texts)):
                    progress(done, len(texts))
        return out


# -- command line -------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.retrieval.onnx_embedder")
    commands = parser.add_subparsers(dest="command", required=True)
    export = commands.add_parser("export", help="make the cached ONNX files (idempotent)")
    export.add_argument("--precision", choices=[*PRECISIONS, "all"], default="all")
    build = commands.add_parser("build", help="(internal) build one file, no lock, no cache check")
    build.add_argument("--precision", choices=PRECISIONS, required=True)
    build.add_argument("--to", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "build":
        if args.precision == "fp32":
            report = build_fp32(args.to)
        else:
            report = build_int8(args.to, model_file("fp32"))
        print(json.dumps(report))
        return 0
    status = 0
    for precision in (PRECISIONS if args.precision == "all" else (args.precision,)):
        try:
            print(f"onnx {precision}: {ensure_model(precision, retry_failed=True)}")
        except (OnnxUnavailable, ImportError) as exc:
            print(f"onnx {precision} unavailable, ragfleet will embed with torch: {exc}",
                  file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    os.environ.update(_OFFLINE)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.exit(main())
