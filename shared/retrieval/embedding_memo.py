"""An embedder that remembers the vectors of the texts it embedded last.

Scoring embeds each answer's contexts and their sentences (shared.pipeline.reference_free):
most of its work, and the same texts again for every model of a batch, and for every question
whose retrieval found the same chunk. Remembering them in the worker process embeds each once.
A text's vector does not depend on what it was embedded with beyond float rounding (1e-6:
batches pad to their longest text, and padding is masked)."""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

# ~1.5 KB per vector (384 float32): a few MB per cpu process, a long batch's contexts
CAPACITY = 4096


class Remembering:
    """The wrapped embedder's `embed`, skipping texts seen among the last `capacity` (least
    recently used first out). `hits` and `misses` count texts. Other attributes are the
    wrapped embedder's."""

    def __init__(self, embedder, capacity: int = CAPACITY):
        self.embedder, self.capacity = embedder, capacity
        self.vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self.hits = self.misses = 0
        self.lock = threading.Lock()

    def embed(self, texts: list[str], progress=None, threads=None) -> np.ndarray:
        with self.lock:
            known = {t: self.vectors[t] for t in texts if t in self.vectors}
        missing = list(dict.fromkeys(t for t in texts if t not in known))
        if missing:
            fresh = self.embedder.embed(missing, progress=progress, threads=threads)
            known.update((t, row.copy()) for t, row in zip(missing, fresh))  # not views of fresh
        with self.lock:
            for text in texts:
                self.vectors[text] = known[text]
                self.vectors.move_to_end(text)
            self.hits += len(texts) - len(missing)
            self.misses += len(missing)
            while len(self.vectors) > self.capacity:
                self.vectors.popitem(last=False)
        return np.stack([known[t] for t in texts]) if texts else \
            np.empty((0, self.dim), dtype=np.float32)

    def __getattr__(self, name: str):
        return getattr(self.embedder, name)
