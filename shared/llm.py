"""The model runner: an engine loaded once per process; `generate(request)` returns text + timings.

Tasks only call `generate`; how the engine schedules (one sequence today, continuous batching
later) is its own business.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from shared import chat_templates
from shared.catalog import ModelSettings
from shared.errors import ModelUnavailable, RagfleetError
from shared.schemas import ChatMessage, GenerationRequest, GenerationResult

log = logging.getLogger(__name__)


class PromptTooLong(RagfleetError):
    """The prompt plus the requested new tokens do not fit the model's context window."""


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


class PromptCodec:
    """Chat messages to prompt tokens for one loaded model: its chat template (or the catalog's
    chat_format) and its tokenizer. Read-only, so safe to call from several threads."""

    def __init__(self, model: ModelSettings, llama_model):
        self.model = model
        self.llama_model = llama_model  # llama_cpp._internals.LlamaModel
        self.bos_text = self.token_text(llama_model.token_bos())
        self.render = self._formatter()

    def _formatter(self) -> chat_templates.Formatter:
        if self.model.chat_format:
            try:
                return chat_templates.BUILT_IN[self.model.chat_format]
            except KeyError:
                raise ModelUnavailable(
                    f"model {self.model.name!r}: unknown chat_format {self.model.chat_format!r} "
                    f"(known: {', '.join(chat_templates.known_formats())})"
                ) from None
        template = self.llama_model.metadata().get("tokenizer.chat_template")
        if not template:
            raise ModelUnavailable(
                f"model {self.model.name!r}: the GGUF has no chat template; "
                "set chat_format in the catalog"
            )
        return chat_templates.from_jinja(
            template, self.bos_text, self.token_text(self.llama_model.token_eos())
        )

    def token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return self.llama_model.detokenize([token], special=True).decode("utf-8", "replace")

    def tokenize(self, text: str) -> list[int]:
        """Prompt tokens, with a BOS token unless the template already wrote one."""
        add_bos = bool(self.bos_text) and not text.startswith(self.bos_text)
        return self.llama_model.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)

    def count_tokens(self, messages: list[ChatMessage]) -> int:
        return len(self.tokenize(self.render(messages).text))

    def prompt(self, request: GenerationRequest) -> tuple[list[int], list[str], int]:
        """The request's prompt tokens, stop strings and max new tokens; refused when they
        cannot fit the context window."""
        rendered = self.render(request.messages)
        tokens = self.tokenize(rendered.text)
        max_tokens = request.max_tokens or self.model.max_tokens
        if len(tokens) + max_tokens > self.model.n_ctx:
            raise PromptTooLong(
                f"prompt of {len(tokens)} tokens plus {max_tokens} new tokens exceeds "
                f"n_ctx {self.model.n_ctx} of {self.model.name}"
            )
        return tokens, rendered.stop + request.stop, max_tokens

    def sampling(self, request: GenerationRequest) -> tuple[float, float]:
        """Temperature and top_p: the request's, else the catalog's."""
        temperature = self.model.temperature if request.temperature is None else request.temperature
        return temperature, self.model.top_p if request.top_p is None else request.top_p


class LlamaEngine:
    """One loaded GGUF model. Not thread-safe: one request at a time."""

    def __init__(self, model: ModelSettings, path: Path, n_threads: int, seed: int = 0):
        from llama_cpp import Llama

        self.model = model
        self.path = path
        self.backend = detect_backend()
        started = time.perf_counter()
        try:
            self.llm = Llama(
                model_path=str(path),
                n_ctx=model.n_ctx,
                n_threads=n_threads,
                n_threads_batch=n_threads,
                n_gpu_layers=model.n_gpu_layers if self.backend != "cpu" else 0,
                seed=seed,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise ModelUnavailable(f"model {model.name!r}: llama.cpp cannot load {path}: {exc}")
        self.load_s = time.perf_counter() - started
        self.codec = PromptCodec(model, self.llm._model)  # the Llama's own vocabulary
        self.render = self.codec.render
        log.info("loaded %s from %s in %.1f s on %s", model.name, path, self.load_s, self.backend)

    def tokenize(self, text: str) -> list[int]:
        return self.codec.tokenize(text)

    def count_tokens(self, messages: list[ChatMessage]) -> int:
        return self.codec.count_tokens(messages)

    def generate(self, request: GenerationRequest) -> GenerationResult:
        """Stream the answer so time to first token is measured apart from decoding."""
        prompt, stop, max_tokens = self.codec.prompt(request)
        temperature, top_p = self.codec.sampling(request)
        started = time.perf_counter()
        first = None
        parts: list[str] = []
        finish_reason = None
        # llama-cpp-python keeps the evaluated tokens and reuses the longest common prefix, so
        # the fixed system text at the front is evaluated once per process, not per question.
        stream = self.llm.create_completion(
            prompt,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
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
        )


def decode_rate(completion_tokens: int, generation_s: float) -> float:
    """Tokens per second while decoding: the first token's time belongs to the prompt."""
    if completion_tokens < 2 or generation_s <= 0:
        return 0.0
    return (completion_tokens - 1) / generation_s
