"""The single-stream engine: one llama-cpp-python `Llama`, one request at a time, streamed so
time to first token is measured apart from decoding."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from shared.errors import ModelUnavailable
from shared.llm.catalog import ModelSettings
from shared.llm.codec import PromptCodec
from shared.llm.engine import decode_rate, detect_backend, repack_setting
from shared.llm.requests import ChatMessage, GenerationRequest, GenerationResult
from shared.llm.vocab import quantization

log = logging.getLogger(__name__)


class LlamaEngine:
    """One loaded GGUF model. Not thread-safe: one request at a time."""

    def __init__(self, model: ModelSettings, path: Path, n_threads: int):
        from llama_cpp import Llama

        self.model = model
        self.path = path
        self.backend = detect_backend()
        started = time.perf_counter()
        try:
            with repack_setting(model.repack):
                self.llm = Llama(
                    model_path=str(path),
                    n_ctx=model.n_ctx,
                    n_threads=n_threads,
                    n_threads_batch=n_threads,
                    n_gpu_layers=model.n_gpu_layers if self.backend != "cpu" else 0,
                    verbose=False,
                    **({"rope_freq_base": model.rope_freq_base} if model.rope_freq_base else {}),
                )
        except (ValueError, RuntimeError) as exc:
            raise ModelUnavailable(
                f"model {model.name!r}: llama.cpp cannot load {path}: {exc}") from None
        self.load_s = time.perf_counter() - started
        self.codec = PromptCodec(model, self.llm._model)  # the Llama's own vocabulary
        self.quantization = quantization(self.llm.metadata)
        self.render = self.codec.render
        log.info("loaded %s from %s in %.1f s on %s", model.name, path, self.load_s, self.backend)

    def tokenize(self, text: str) -> list[int]:
        return self.codec.tokenize(text)

    def count_tokens(self, messages: list[ChatMessage]) -> int:
        return self.codec.count_tokens(messages)

    def generate(self, request: GenerationRequest) -> GenerationResult:
        """Stream the answer so time to first token is measured apart from decoding."""
        prompt, stop, max_tokens = self.codec.prompt(request)
        sampling = self.codec.sampling(request)
        self.llm.last_n_tokens_size = sampling.repeat_last_n  # read when its sampler is built
        started = time.perf_counter()
        first = None
        parts: list[str] = []
        finish_reason = None
        # llama-cpp-python keeps the evaluated tokens and reuses the longest common prefix, so
        # the fixed system text at the front is evaluated once per process, not per question.
        stream = self.llm.create_completion(
            prompt,
            max_tokens=max_tokens,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k,
            repeat_penalty=sampling.repeat_penalty,
            seed=sampling.seed,
            stop=stop,
            stream=True,
        )
        deadline = started + request.time_budget_s if request.time_budget_s else None
        for chunk in stream:
            if deadline and time.perf_counter() > deadline:
                finish_reason = "time_limit"  # checked per token: no signal needed to stop
                stream.close()
                break
            choice = chunk["choices"][0]
            if first is None and choice["text"]:
                first = time.perf_counter()
            parts.append(choice["text"])
            finish_reason = choice.get("finish_reason") or finish_reason
        ended = time.perf_counter()
        text = "".join(parts)
        completion_tokens = len(self.llm.tokenize(text.encode("utf-8"), add_bos=False)) if text else 0
        first = first or ended
        generation_s = ended - first
        return GenerationResult(
            text=text.strip(),
            finish_reason=finish_reason,
            prompt_tokens=len(prompt),
            completion_tokens=completion_tokens,
            ttft_s=first - started,
            generation_s=generation_s,
            total_s=ended - started,
            tokens_per_s=decode_rate(completion_tokens, generation_s),
            sampling=sampling,
            max_tokens=max_tokens,
        )
