"""Continuous batching: one llama.cpp context with room for N sequences, decoded together.

Decoding a small model on a CPU is bound by memory traffic (every step reads all the weights), so
one step that advances N sequences costs little more than one that advances one. A scheduler
thread owns the context; callers on other threads hand it requests and wait for their results.
Each step carries one token for every sequence that is decoding plus a bounded slice of the
prompts still being evaluated ("chunked prefill"), so a long new prompt never stalls the answers
already streaming. A sequence that finishes or fails frees its slot and its KV cells at once, and
the next waiting request takes them.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from shared.errors import ModelUnavailable, RagfleetError
from shared.llm.catalog import ModelSettings
from shared.llm.codec import PromptCodec
from shared.llm.engine import decode_rate, detect_backend
from shared.llm.requests import ChatMessage, GenerationRequest, GenerationResult, Sampling
from shared.llm.vocab import quantization

log = logging.getLogger(__name__)

# Prompt tokens evaluated per step across all prefilling sequences: large enough to keep prompt
# evaluation efficient, small enough that a decoding step is not held up for long.
DEFAULT_PREFILL_CHUNK = 256


class EngineClosed(RagfleetError):
    """The engine was closed or its scheduler stopped; the request was not (fully) answered."""


@dataclass
class _Sequence:
    """One request in flight: its slot (sequence id), its sampler and its progress."""

    request: GenerationRequest
    sampling: Sampling
    prompt: list[int]
    stop: list[str]
    max_tokens: int
    future: Future
    submitted: float
    slot: int = -1
    sampler: object = None
    evaluated: int = 0  # prompt tokens already in the KV cache
    last_token: int = -1  # sampled, not yet fed back
    tokens: list[int] = field(default_factory=list)
    text: bytearray = field(default_factory=bytearray)
    first_token_at: float | None = None
    deadline: float | None = None

    @property
    def prefilling(self) -> bool:
        return self.evaluated < len(self.prompt)

    @property
    def position(self) -> int:
        """Where the next token goes in this sequence's KV positions."""
        return self.evaluated + max(0, len(self.tokens) - 1)


class BatchedEngine:
    """A loaded GGUF model answering up to `parallel` requests at once. Thread-safe."""

    def __init__(self, model: ModelSettings, path: Path, n_threads: int, parallel: int,
                 prefill_chunk: int = DEFAULT_PREFILL_CHUNK,
                 unified_kv: bool = False):
        import llama_cpp
        from llama_cpp import _internals  # pinned llama-cpp-python: the low-level wrappers
        from llama_cpp._logger import set_verbose

        set_verbose(False)  # llama.cpp's context set-up log goes to stderr otherwise

        self._llama_cpp = llama_cpp
        self._internals = _internals
        self.model = model
        self.path = path
        self.parallel = parallel
        self.backend = detect_backend()
        started = time.perf_counter()
        model_params = llama_cpp.llama_model_default_params()
        model_params.n_gpu_layers = model.n_gpu_layers if self.backend != "cpu" else 0
        model_params.use_extra_bufts = model.repack  # see ModelSettings.repack
        try:
            self._model = _internals.LlamaModel(path_model=str(path), params=model_params,
                                                verbose=False)
            self.batch_size = prefill_chunk + parallel
            ctx_params = llama_cpp.llama_context_default_params()
            ctx_params.n_ctx = model.n_ctx * parallel  # each sequence may use a full n_ctx
            ctx_params.n_batch = self.batch_size
            ctx_params.n_ubatch = self.batch_size
            ctx_params.n_seq_max = parallel
            if model.rope_freq_base:  # 0 in the defaults: the GGUF's own
                ctx_params.rope_freq_base = model.rope_freq_base
            # Split by default: each decoding token attends over its own sequence's cells only.
            # A unified pool decodes Gemma 3 270M faster on short prompts but every measured
            # model slower on RAG-length prompts (BENCHMARKS.md). Catalog `kv_unified`.
            ctx_params.kv_unified = unified_kv
            # as llama-cpp-python's Llama: the same kernels give the same greedy answers
            ctx_params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
            ctx_params.n_threads = n_threads
            ctx_params.n_threads_batch = n_threads
            self._ctx = _internals.LlamaContext(model=self._model, params=ctx_params, verbose=False)
            self._batch = _internals.LlamaBatch(n_tokens=self.batch_size, embd=0, n_seq_max=1,
                                                verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise ModelUnavailable(
                f"model {model.name!r}: llama.cpp cannot load {path}: {exc}") from None
        self.prefill_chunk = prefill_chunk
        self.codec = PromptCodec(model, self._model)
        self.quantization = quantization(self._model.metadata())
        self.render = self.codec.render
        self.load_s = time.perf_counter() - started
        self._waiting: queue.Queue[_Sequence | None] = queue.Queue()
        self._free_slots = list(range(parallel))
        self._active: list[_Sequence] = []
        self._closed = threading.Event()
        self._closing = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="batched-engine", daemon=True)
        self._thread.start()
        log.info("loaded %s from %s in %.1f s on %s, %d sequences x %d tokens", model.name, path,
                 self.load_s, self.backend, parallel, model.n_ctx)

    # -- callers' side ---------------------------------------------------------------------

    def tokenize(self, text: str) -> list[int]:
        return self.codec.tokenize(text)

    def count_tokens(self, messages: list[ChatMessage]) -> int:
        return self.codec.count_tokens(messages)

    def submit(self, request: GenerationRequest) -> Future:
        """Queue a request; the future resolves to its GenerationResult."""
        prompt, stop, max_tokens = self.codec.prompt(request)  # PromptTooLong raised here
        future: Future = Future()
        with self._closing:  # never queued after the scheduler's last look at the queue
            if self._closed.is_set():
                raise EngineClosed(f"the engine of {self.model.name} is closed")
            self._waiting.put(_Sequence(request=request, sampling=self.codec.sampling(request),
                                        prompt=prompt, stop=stop,
                                        max_tokens=max_tokens, future=future,
                                        submitted=time.perf_counter()))
        return future

    def generate(self, request: GenerationRequest) -> GenerationResult:
        return self.submit(request).result()

    def close(self) -> None:
        """Stop the scheduler; requests still waiting or running fail with EngineClosed."""
        with self._closing:
            self._closed.set()
        self._waiting.put(None)
        self._thread.join(timeout=30)

    # -- the scheduler thread --------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._closed.is_set():
                self._admit(block=not self._active)
                if self._active:
                    self._step()
        except BaseException as exc:  # a llama.cpp failure: nobody may wait forever
            log.exception("batched engine of %s stopped", self.model.name)
            with self._closing:
                self._closed.set()
            self._fail_all(EngineClosed(f"the engine of {self.model.name} stopped: {exc}"))
            return
        self._fail_all(EngineClosed(f"the engine of {self.model.name} is closed"))

    def _admit(self, block: bool) -> None:
        """Move waiting requests into free slots; sleep on the queue when there is no work."""
        while self._free_slots:
            try:
                seq = self._waiting.get(block=block, timeout=None)
            except queue.Empty:
                return
            if seq is None:  # close() woke us
                return
            block = False
            if seq.future.cancelled():
                continue
            seq.slot = self._free_slots.pop(0)
            seq.sampler = self._sampler(seq.sampling)
            budget = seq.request.time_budget_s
            seq.deadline = seq.submitted + budget if budget else None
            self._active.append(seq)

    def _sampler(self, sampling: Sampling):
        """The same chain llama-cpp-python's create_completion builds: the repeat penalty over
        the last tokens generated, then greedy at temperature 0, else top-k, top-p, min-p 0.05,
        temperature and a seeded draw."""
        sampler = self._internals.LlamaSampler()
        sampler.add_penalties(self._model.n_vocab(), sampling.repeat_last_n,
                              sampling.repeat_penalty, 0.0, 0.0)
        if sampling.temperature == 0:
            sampler.add_greedy()
        else:
            sampler.add_top_k(sampling.top_k)
            sampler.add_top_p(sampling.top_p, 1)
            sampler.add_min_p(0.05, 1)
            sampler.add_temp(sampling.temperature)
            sampler.add_dist(sampling.seed)
        return sampler

    def _step(self) -> None:
        """One llama_decode: a token per decoding sequence, then prompt slices, then sampling."""
        batch = self._batch.batch
        batch.n_tokens = 0
        wants_logits: list[tuple[_Sequence, int]] = []
        in_batch: dict[int, _Sequence] = {}

        def add(seq: _Sequence, token: int, position: int, logits: bool) -> None:
            i = batch.n_tokens
            batch.token[i] = token
            batch.pos[i] = position
            batch.seq_id[i][0] = seq.slot
            batch.n_seq_id[i] = 1
            batch.logits[i] = logits
            batch.n_tokens = i + 1
            in_batch[seq.slot] = seq
            if logits:
                wants_logits.append((seq, i))

        for seq in self._active:
            if not seq.prefilling:
                add(seq, seq.last_token, seq.position, True)
        budget = self.prefill_chunk
        for seq in self._active:
            if budget <= 0:
                break
            if seq.prefilling:
                end = min(len(seq.prompt), seq.evaluated + budget)
                for position in range(seq.evaluated, end):
                    add(seq, seq.prompt[position], position, position == len(seq.prompt) - 1)
                budget -= end - seq.evaluated
                seq.evaluated = end
        status = self._llama_cpp.llama_decode(self._ctx.ctx, batch)
        if status != 0:  # fail this step's sequences, keep serving the others
            for seq in in_batch.values():
                self._fail(seq, RagfleetError(f"llama.cpp could not decode (status {status})"))
            return
        now = time.perf_counter()
        for seq, index in wants_logits:
            token = seq.sampler.sample(self._ctx, index)  # also accepts the token
            self._advance(seq, token, now)
        for seq in list(self._active):  # a long prompt can run past its budget while prefilling
            if seq.deadline and now > seq.deadline:
                self._finish(seq, "time_limit", now)

    def _advance(self, seq: _Sequence, token: int, now: float) -> None:
        if seq.first_token_at is None:
            seq.first_token_at = now
        if self._llama_cpp.llama_vocab_is_eog(self._model.vocab, token):
            return self._finish(seq, "stop", now)
        seq.tokens.append(token)
        seq.last_token = token
        seq.text += self._model.detokenize([token])
        text = seq.text.decode("utf-8", "ignore")
        for stop in seq.stop:
            cut = text.find(stop)
            if cut >= 0:
                seq.text = bytearray(text[:cut].encode("utf-8"))
                return self._finish(seq, "stop", now)
        if len(seq.tokens) >= seq.max_tokens:
            return self._finish(seq, "length", now)

    def _finish(self, seq: _Sequence, reason: str, now: float) -> None:
        self._release(seq)
        first = seq.first_token_at or now
        generation_s = now - first
        seq.future.set_result(GenerationResult(
            text=seq.text.decode("utf-8", "ignore").strip(),
            finish_reason=reason,
            prompt_tokens=len(seq.prompt),
            completion_tokens=len(seq.tokens),
            ttft_s=first - seq.submitted,  # waiting for a slot included: what the caller saw
            generation_s=generation_s,
            total_s=now - seq.submitted,
            tokens_per_s=decode_rate(len(seq.tokens), generation_s),
            token_ids=list(seq.tokens),
            sampling=seq.sampling,
            max_tokens=seq.max_tokens,
        ))

    def _release(self, seq: _Sequence) -> None:
        """Free the slot and the sequence's KV cells for the next request."""
        self._llama_cpp.llama_memory_seq_rm(self._ctx.memory, seq.slot, -1, -1)
        self._active.remove(seq)
        self._free_slots.append(seq.slot)
        seq.sampler = None

    def _fail(self, seq: _Sequence, exc: BaseException) -> None:
        self._release(seq)
        seq.future.set_exception(exc)

    def _fail_all(self, exc: BaseException) -> None:
        for seq in list(self._active):
            self._fail(seq, exc)
        while True:
            try:
                seq = self._waiting.get_nowait()
            except queue.Empty:
                return
            if seq is not None and not seq.future.done():
                seq.future.set_exception(exc)
