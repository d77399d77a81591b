"""How much memory a model pool needs, checked before it starts.

A batching pool keeps a KV cache of n_ctx cells for each of its `parallel` sequences, so its
memory grows with parallel x n_ctx; a setting that does not fit would push the machine into swap
or get the pool killed mid-batch. The estimate reads the GGUF's attention shape (vocabulary-only
load: no weights read) and is an upper bound: f16 keys and values in every layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psutil

from shared.errors import UsageError
from shared.llm.vocab import vocab_only

# The pool process before its model: Python, the worker's modules, llama.cpp's libraries
# (77 MB resident before the load and 31-36 MB of libraries mapped by it, bench_memory).
PROCESS_BASE_BYTES = 112 * 2**20
# A pool's heap grows during a batch with the vocabulary (sampling arrays of n_vocab entries
# made per answer, kept by the allocator) and levels off: 80 MB for Gemma 3's 262k entries,
# 15 MB for SmolLM2's 49k over 50 answers (bench_study). About 300 bytes an entry.
VOCAB_BYTES_PER_ENTRY = 300
# llama.cpp's compute buffer for a prompt batch of n_ubatch tokens: the attention scores
# (n_ubatch x context x heads, f32) and the feed-forward activations (about three of
# n_ubatch x n_ff, f32). Fitted on the four models of bench_memory, within 5% of each.
UBATCH = 512
F32_BYTES = 4
F16_BYTES = 2
# The cpu pool: the embedder, the collection indexes it caches, PDF extraction. With torch
# all-MiniLM-L6-v2 measured 0.66 GB resident, 0.93 GB at its peak while embedding 64 chunks of
# 1,000 characters; ONNX Runtime (the default) 0.23 GB at its peak, but torch is the fallback
# and large collections' indexes come on top: kept at 1 GiB.
CPU_POOL_BYTES = 2**30


@dataclass(frozen=True)
class AttentionShape:
    layers: int
    kv_heads: int
    key_length: int
    value_length: int
    heads: int = 0
    ff_length: int = 0
    vocab_size: int = 0

    def kv_bytes_per_cell(self) -> int:
        return self.layers * self.kv_heads * (self.key_length + self.value_length) * F16_BYTES

    def compute_bytes(self, context_cells: int) -> int:
        """The compute buffer of one prompt batch over a context of this many cells."""
        attention = UBATCH * context_cells * self.heads * F32_BYTES
        feed_forward = 3 * UBATCH * self.ff_length * F32_BYTES
        return attention + feed_forward

    def sampling_bytes(self) -> int:
        return self.vocab_size * VOCAB_BYTES_PER_ENTRY


def attention_shape(path: Path) -> AttentionShape:
    with vocab_only(path) as model:
        meta = model.metadata()
        vocab_size = model.n_vocab()
    arch = meta["general.architecture"]

    def value(key: str, default: int | None = None) -> int:
        raw = meta.get(f"{arch}.{key}")
        if raw is None:
            if default is None:
                raise ValueError(f"{path.name}: GGUF metadata lacks {arch}.{key}")
            return default
        return int(raw)

    heads = value("attention.head_count")
    head_dim = value("embedding_length") // heads
    return AttentionShape(
        layers=value("block_count"),
        kv_heads=value("attention.head_count_kv", heads),
        key_length=value("attention.key_length", head_dim),
        value_length=value("attention.value_length", head_dim),
        heads=heads,
        ff_length=value("feed_forward_length", 4 * value("embedding_length")),
        vocab_size=vocab_size,
    )


@dataclass(frozen=True)
class MemoryEstimate:
    model_bytes: int
    kv_bytes: int
    overhead_bytes: int

    @property
    def total(self) -> int:
        return self.model_bytes + self.kv_bytes + self.overhead_bytes


def estimate(path: Path, n_ctx: int, parallel: int) -> MemoryEstimate:
    """What the pool needs: the weights once (memory-mapped, or copied by repacking with the
    mapped pages then unused and reclaimable), the KV cache, compute buffers, the process."""
    shape = attention_shape(path)
    # a batching pool keeps n_ctx cells per sequence; a prompt batch attends within its own
    return MemoryEstimate(model_bytes=path.stat().st_size,
                          kv_bytes=shape.kv_bytes_per_cell() * n_ctx * parallel,
                          overhead_bytes=(PROCESS_BASE_BYTES + shape.compute_bytes(n_ctx)
                                          + shape.sampling_bytes()))


def estimate_or_size(path: Path, n_ctx: int, parallel: int) -> MemoryEstimate:
    """The estimate, or the file's size alone when llama.cpp cannot read its metadata (a broken
    GGUF): the pool then reports the load failure itself, as it would without the check."""
    try:
        return estimate(path, n_ctx, parallel)
    except (ValueError, RuntimeError, KeyError):
        return MemoryEstimate(path.stat().st_size, 0, PROCESS_BASE_BYTES)


def check_fits(model_name: str, path: Path, n_ctx: int, parallel: int,
               available: int | None = None) -> MemoryEstimate:
    """The estimate, or a UsageError naming the setting when it exceeds available memory."""
    need = estimate_or_size(path, n_ctx, parallel)
    available = psutil.virtual_memory().available if available is None else available
    if need.total > available:
        raise UsageError(shortfall(model_name, need, n_ctx, parallel, available))
    return need


def shortfall(model_name: str, need: MemoryEstimate, n_ctx: int, parallel: int,
              available: int) -> str:
    """One line saying what does not fit and what to change."""
    return (f"model {model_name!r} with parallel {parallel} needs about {_gb(need.total)} "
            f"(KV cache {_gb(need.kv_bytes)} for {parallel} sequences x {n_ctx} tokens, "
            f"model {_gb(need.model_bytes)}) but {_gb(max(0, available))} is left for it; "
            + ("lower parallel or n_ctx" if parallel > 1
               else "start fewer pools, a smaller model or a lower n_ctx"))


def check_cpu_pool_fits(available: int | None = None) -> int:
    """The cpu pool's memory (the embedder), or a UsageError when it does not fit."""
    available = psutil.virtual_memory().available if available is None else available
    if CPU_POOL_BYTES > available:
        raise UsageError(f"the cpu pool (embedder) needs about {_gb(CPU_POOL_BYTES)} but "
                         f"{_gb(available)} is available")
    return CPU_POOL_BYTES


def _gb(n: int) -> str:
    return f"{n / 2**30:.1f} GB"


def process_memory() -> dict:
    """This process's resident memory now and at its peak (Linux: VmHWM; elsewhere the
    rusage maximum), in bytes: a pool's cost in memory, model and KV cache included. On Linux
    also its anonymous part (heap: KV cache, buffers, weights llama.cpp copied) and its
    file-backed part (the memory-mapped GGUF: clean pages the kernel can drop and read again)."""
    rss = psutil.Process().memory_info().rss
    peak = None
    split = {}
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    peak = int(line.split()[1]) * 1024
                elif line.startswith(("RssAnon:", "RssFile:")):
                    key = "rss_anon_bytes" if line.startswith("RssAnon") else "rss_file_bytes"
                    split[key] = int(line.split()[1]) * 1024
    except OSError:
        import resource
        import sys

        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak = maxrss if sys.platform == "darwin" else maxrss * 1024  # bytes there, KiB here
    return {"rss_bytes": rss, "peak_rss_bytes": max(rss, peak or rss), **split}
