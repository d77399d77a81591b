"""The Engine protocol: what a model pool's task needs of a loaded model, whichever way it
schedules (one sequence at a time, or continuous batching). Tasks and the pipeline only call
`count_tokens` and `generate`; a test can stand in a small scripted engine."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Protocol

from shared.errors import RagfleetError
from shared.llm.catalog import ModelSettings
from shared.llm.requests import ChatMessage, GenerationRequest, GenerationResult


class Engine(Protocol):
    model: ModelSettings  # the catalog entry it was loaded from
    path: Path  # the GGUF file
    backend: str  # cpu, cuda, metal, ...
    load_s: float  # how long loading the model took
    quantization: str  # Q4_1, Q4_K_M, ... (from the GGUF)

    def count_tokens(self, messages: list[ChatMessage]) -> int:
        """Prompt tokens of these messages in the model's own chat template."""
        ...

    def generate(self, request: GenerationRequest) -> GenerationResult:
        """The answer with its token counts and timings; blocks until it is done."""
        ...


class PromptTooLong(RagfleetError):
    """The prompt plus the requested new tokens do not fit the model's context window."""


@contextlib.contextmanager
def repack_setting(repack: bool):
    """Llama() takes no repack option: while it loads, its default model parameters carry it
    (use_extra_bufts: llama.cpp's CPU weight repacking; see ModelSettings.repack)."""
    import llama_cpp.llama_cpp as low

    default_params = low.llama_model_default_params

    def with_repack():
        params = default_params()
        params.use_extra_bufts = repack
        return params

    low.llama_model_default_params = with_repack
    try:
        yield
    finally:
        low.llama_model_default_params = default_params


def detect_backend() -> str:
    """Which accelerator this llama-cpp-python build offloads to: cuda, metal, or cpu."""
    import llama_cpp

    if not llama_cpp.llama_supports_gpu_offload():
        return "cpu"
    info = llama_cpp.llama_print_system_info().decode("utf-8", "replace").upper()
    for name in ("CUDA", "METAL", "VULKAN", "HIP", "SYCL"):
        if name in info:
            return name.lower()
    return "gpu"


def decode_rate(completion_tokens: int, generation_s: float) -> float:
    """Tokens per second while decoding: the first token's time belongs to the prompt."""
    if completion_tokens < 2 or generation_s <= 0:
        return 0.0
    return (completion_tokens - 1) / generation_s
