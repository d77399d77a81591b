"""The cpu pool's embedding leaves the cores to the model pools of its host.

llama.cpp's answers slow down when anything else runs on their cores, even at idle priority
(BENCHMARKS.md, "An ingestion while a pool answers"; "The cpu pool beside a pool"). So an
embedder asks before every batch of texts how many cores it may use: every core while no model
pool of this host is generating (the `generating` marks in Redis); while one is, it waits. The
waits of one task add up to at most its pause budget, after which it goes on with one core, so
work behind a long batch still ends within its time limit."""

from __future__ import annotations

import os
import time

import numpy as np
import redis

from shared.state import registry

# How often a paused embedder looks again whether the model pools of its host still generate.
PAUSE_STEP_S = 0.2


class PoolsFirst:
    """The `threads` callback of an embedder (Embedder.embed, OnnxEmbedder.embed): the cores it
    may use now, after waiting for this host's model pools within max_pause_s (counted in
    pause steps). `waited_s`: how long it has waited so far, by the clock."""

    def __init__(self, client: redis.Redis, max_pause_s: float, sleep=time.sleep,
                 machine: str | None = None):
        self.client, self.max_pause_s, self.sleep = client, max_pause_s, sleep
        self.host, self.cores = machine or registry.this_machine(), os.cpu_count() or 1
        self.paused_s = self.waited_s = 0.0

    def generating(self) -> bool:
        try:
            return registry.generating_on(self.client, self.host) > 0
        except redis.exceptions.RedisError:
            return True  # cannot tell: assume the pools are busy

    def __call__(self) -> int:
        while self.generating():
            if self.paused_s >= self.max_pause_s:
                return 1
            started = time.perf_counter()
            self.sleep(PAUSE_STEP_S)
            self.waited_s += time.perf_counter() - started
            self.paused_s += PAUSE_STEP_S
        return self.cores


class Yielding:
    """An embedder that embeds only as PoolsFirst allows, on the calling thread (the scoring
    step). Before every batch of the wrapped embedder's size it asks `threads` (waiting while a
    pool generates), then embeds that batch on this thread at its own priority: the embedders'
    own `threads` path runs batches on idle-priority threads, which a busy pool would starve
    once the pause budget is spent. Texts go longest first, as the embedders batch them, so
    the batches and their vectors are the ones a plain call makes. `dim`, `id` and the rest are
    the wrapped embedder's."""

    def __init__(self, embedder, threads: PoolsFirst):
        self.embedder, self.threads = embedder, threads
        self.step = getattr(embedder, "batch_size", None) or 2

    def embed(self, texts: list[str], progress=None, threads=None) -> np.ndarray:
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = np.empty((len(texts), self.embedder.dim), dtype=np.float32)
        for start in range(0, len(order), self.step):
            self.threads()  # waits while a pool of this host generates, within its budget
            rows = order[start:start + self.step]
            out[rows] = self.embedder.embed([texts[i] for i in rows])
            if progress:
                progress(start + len(rows), len(texts))
        return out

    def __getattr__(self, name: str):
        return getattr(self.embedder, name)
