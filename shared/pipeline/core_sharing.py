"""The cpu pool's embedding leaves the cores to the model pools of its host.

llama.cpp's answers slow down when anything else runs on their cores, even at idle priority
(BENCHMARKS.md, "An ingestion while a pool answers"; "The cpu pool beside a pool"). So an
embedder asks before every batch of texts how many cores it may use: every core while no model
pool of this host is generating (the `generating` marks in Redis); while one is, it waits. The
waits of one task add up to at most its pause budget, after which it goes on with one core, so
work behind a long batch still ends within its time limit."""

from __future__ import annotations

import os
import socket
import time

import redis

from shared.state import registry

# How often a paused embedder looks again whether the model pools of its host still generate.
PAUSE_STEP_S = 0.2


class PoolsFirst:
    """The `threads` callback of an embedder (Embedder.embed, OnnxEmbedder.embed): the cores it
    may use now, after waiting for this host's model pools within max_pause_s (counted in
    pause steps). `waited_s`: how long it has waited so far, by the clock."""

    def __init__(self, client: redis.Redis, max_pause_s: float, sleep=time.sleep):
        self.client, self.max_pause_s, self.sleep = client, max_pause_s, sleep
        self.host, self.cores = socket.gethostname(), os.cpu_count() or 1
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
    """An embedder that embeds only as PoolsFirst allows (the scoring step: every `embed` call
    of it asks before each batch). `dim`, `id` and the rest are the wrapped embedder's."""

    def __init__(self, embedder, threads: PoolsFirst):
        self.embedder, self.threads = embedder, threads

    def embed(self, texts: list[str], progress=None, threads=None):
        return self.embedder.embed(texts, progress=progress, threads=threads or self.threads)

    def __getattr__(self, name: str):
        return getattr(self.embedder, name)
