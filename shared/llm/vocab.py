"""A GGUF's vocabulary and metadata without its weights (llama.cpp's vocab-only load: well
under a second), for what can be known of a model before a pool loads it."""

from __future__ import annotations

import contextlib
from pathlib import Path


@contextlib.contextmanager
def vocab_only(path: Path):
    """A llama_cpp._internals.LlamaModel with the vocabulary and metadata only."""
    import llama_cpp
    from llama_cpp import _internals
    from llama_cpp._logger import set_verbose

    set_verbose(False)
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    model = _internals.LlamaModel(path_model=str(path), params=params, verbose=False)
    try:
        yield model
    finally:
        model.close()


def quantization(metadata: dict) -> str:
    """The weights' type, named as llama.cpp names it (Q4_1, Q4_K_M, ...), from the GGUF's
    general.file_type; "unknown" when the file does not say."""
    import llama_cpp

    raw = metadata.get("general.file_type")
    if raw is None:
        return "unknown"
    names = {getattr(llama_cpp, n): n.removeprefix("LLAMA_FTYPE_MOSTLY_").removeprefix("LLAMA_FTYPE_")
             for n in dir(llama_cpp) if n.startswith("LLAMA_FTYPE_") and n != "LLAMA_FTYPE_GUESSED"}
    return names.get(int(raw), f"type {raw}")
