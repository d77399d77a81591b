"""The continuous-batching engine on the real models: same answers as the single-stream engine,
per-sequence settings, chunked prefill, slots and KV cells freed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from shared.config import PROJECT_ROOT, Settings
from shared.llm.batched_engine import BatchedEngine
from shared.llm.catalog import load_catalog
from shared.llm.engine import PromptTooLong
from shared.llm.llama_engine import LlamaEngine
from shared.llm.requests import ChatMessage, GenerationRequest
from shared.retrieval.chunking import chunk_pages
from shared.retrieval.pdf import extract_pages
from shared.retrieval.prompts import messages_for

pytestmark = pytest.mark.integration

NORTHWIND = PROJECT_ROOT / "data" / "northwind"
# llama.cpp's kernels for a batch of several sequences may round the logits differently from
# one sequence alone; greedy decoding can then take the other branch where the best two tokens
# are this close (in logits) and nowhere else.
NEAR_TIE_LOGITS = 0.5


def _model(name: str):
    settings = Settings()
    model = load_catalog(settings.catalog_path).get(name)
    return model, model.ensure_file(settings.models_dir)


def _rag_requests(name: str, n: int, max_tokens: int) -> list[GenerationRequest]:
    """Real RAG prompts of different lengths: Northwind questions with 1-3 passages of the PDF."""
    pdf = NORTHWIND / "Northwind_Standard_Benefits_Details.pdf"
    chunks = chunk_pages(pdf.name, extract_pages(pdf.read_bytes(), pdf.name), 1000, 150)
    rows = [json.loads(line) for line in (NORTHWIND / "ground_truth.jsonl").read_text().splitlines()
            if line.strip()]
    requests = []
    for i, row in enumerate(rows[:n]):
        contexts = [{"text": c.text} for c in chunks[10 + 3 * i: 11 + 3 * i + i % 3]]
        requests.append(GenerationRequest(model=name, messages=messages_for(row["question"], contexts),
                                          max_tokens=max_tokens, temperature=0,
                                          # plain greedy: the near-tie check below reads raw
                                          # logits, which a repeat penalty would shift
                                          repeat_penalty=1.0))
    return requests


def _next_token_margin(llm, prompt: list[int], generated: list[int]) -> tuple[float, list[int]]:
    """Teacher-forced: the gap between the best two next-token logits after prompt + generated,
    and the two tokens."""
    llm.reset()
    llm.eval(prompt + generated)
    # the last evaluated token's logits, read from the context (Llama keeps no copy of them)
    logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),)).copy()
    top2 = np.argsort(logits)[-2:][::-1]
    return float(logits[top2[0]] - logits[top2[1]]), [int(t) for t in top2]


@pytest.mark.parametrize("name", ["smollm2-135m", "gemma3-270m"])
def test_batched_answers_equal_single_stream_or_differ_only_at_near_ties(name):
    model, path = _model(name)
    requests = _rag_requests(name, 6, 40)
    single = LlamaEngine(model, path, n_threads=2)
    reference_texts = []
    for request in requests:
        # each prompt evaluated from scratch, as the batching engine does: reusing the previous
        # prompt's prefix splits the rest into other slices, and Gemma's greedy answer flips at
        # a near-tie on that rounding alone (seen on this machine's AVX-512 kernels)
        single.llm.reset()
        reference_texts.append(single.generate(request).text)
    codec, llm = single.codec, single.llm

    # prompts evaluated in slices of llama-cpp-python's n_batch (512), so the same matrix
    # shapes, hence the same rounding, as its own loop
    one = BatchedEngine(model, path, n_threads=2, parallel=1, prefill_chunk=512)
    try:
        alone = [one.generate(r) for r in requests]
    finally:
        one.close()
    # one sequence per step: the same kernels as llama-cpp-python's own loop, the same text
    assert [r.text for r in alone] == reference_texts

    # four sequences per step and prompts cut in 32-token slices
    many = BatchedEngine(model, path, n_threads=2, parallel=4, prefill_chunk=32)
    try:
        futures = [many.submit(r) for r in requests]
        batched = [f.result(timeout=600) for f in futures]
    finally:
        many.close()
    identical = 0
    for request, ref, got in zip(requests, alone, batched):
        if got.token_ids == ref.token_ids:
            identical += 1
            continue
        split = next(i for i, (a, b) in enumerate(zip(ref.token_ids + [-1], got.token_ids + [-1]))
                     if a != b)
        prompt, _, _ = codec.prompt(request)
        margin, top2 = _next_token_margin(llm, prompt, ref.token_ids[:split])
        assert margin < NEAR_TIE_LOGITS, (
            f"{name}: batched answer left the single-stream one at token {split} where the best "
            f"token led by {margin:.3f} logits: {ref.text!r} vs {got.text!r}")
        assert got.token_ids[split] in top2 or split == len(got.token_ids)
    # how many part at a near-tie depends on how the requests happened to share steps
    assert identical >= 1, f"none of {len(requests)} identical"


def test_each_sequence_keeps_its_own_settings_and_frees_its_slot():
    model, path = _model("smollm2-135m")
    engine = BatchedEngine(model, path, n_threads=2, parallel=3, prefill_chunk=64)
    question = [ChatMessage(role="user", content="Describe a health insurance plan.")]
    try:
        free = engine.generate(GenerationRequest(model=model.name, messages=question,
                                                 max_tokens=40, temperature=0))
        # a word the answer first reaches after its first quarter
        stop_word = next(w for w in free.text.split() if free.text.find(w) > len(free.text) // 4)
        capped = engine.submit(GenerationRequest(model=model.name, messages=question,
                                                 max_tokens=5, temperature=0))
        stopped = engine.submit(GenerationRequest(model=model.name, messages=question,
                                                  max_tokens=60, temperature=0, stop=[stop_word]))
        sampled = engine.submit(GenerationRequest(model=model.name, messages=question,
                                                  max_tokens=30, temperature=0.9, top_p=0.9))
        budget = engine.submit(GenerationRequest(model=model.name, messages=question,
                                                 max_tokens=400, temperature=0,
                                                 time_budget_s=0.05))
        too_long = GenerationRequest(model=model.name, max_tokens=10, messages=[
            ChatMessage(role="user", content="word " * (model.n_ctx + 50))])
        with pytest.raises(PromptTooLong):
            engine.submit(too_long)  # refused up front; the others go on

        capped, stopped, sampled, budget = (f.result(timeout=300)
                                            for f in (capped, stopped, sampled, budget))
        assert capped.finish_reason == "length" and capped.completion_tokens == 5
        assert stopped.finish_reason == "stop" and stop_word not in stopped.text
        assert 0 < len(stopped.text) < len(free.text)
        assert sampled.completion_tokens > 0 and sampled.ttft_s <= sampled.total_s
        assert budget.finish_reason == "time_limit" and budget.completion_tokens < 400
        for result in (capped, stopped, sampled):
            assert result.prompt_tokens > 5 and result.tokens_per_s >= 0

        # every slot is free again and no sequence holds KV cells
        import llama_cpp

        assert sorted(engine._free_slots) == [0, 1, 2] and not engine._active
        memory = engine._ctx.memory
        assert all(llama_cpp.llama_memory_seq_pos_max(memory, s) == -1 for s in range(3))
    finally:
        engine.close()
    with pytest.raises(Exception, match="closed"):
        engine.generate(GenerationRequest(model=model.name, messages=question, max_tokens=2))


def test_memory_estimate_matches_llama_cpp_and_refuses_what_cannot_fit():
    from shared.errors import UsageError
    from shared.llm import memory

    model, path = _model("smollm2-135m")
    # llama.cpp reports "KV buffer size = 45.00 MiB" for this model at 2048 cells
    assert memory.estimate(path, 2048, 1).kv_bytes == 45 * 2**20
    eight = memory.estimate(path, 2048, 8)
    assert eight.kv_bytes == 8 * 45 * 2**20 and eight.model_bytes == path.stat().st_size
    assert memory.check_fits(model.name, path, 2048, 8, available=eight.total) == eight
    with pytest.raises(UsageError, match=r"parallel 8 needs about .* lower parallel or n_ctx"):
        memory.check_fits(model.name, path, 2048, 8, available=eight.total - 1)


def test_both_engines_apply_the_same_repeat_penalty():
    """The study stack's repeat penalty (over the last tokens generated) changes a looping
    answer, and the batching engine applies it exactly as llama-cpp-python does."""
    model, path = _model("smollm2-135m")
    question = [ChatMessage(role="user", content="Write the word apple fifty times.")]

    def request(penalty: float) -> GenerationRequest:
        return GenerationRequest(model=model.name, messages=question, max_tokens=48,
                                 temperature=0, repeat_penalty=penalty, repeat_last_n=32)

    single = LlamaEngine(model, path, n_threads=2)
    batched = BatchedEngine(model, path, n_threads=2, parallel=2)
    try:
        plain, penalised = single.generate(request(1.0)), single.generate(request(1.5))
        assert penalised.text != plain.text
        assert plain.sampling.repeat_penalty == 1.0 and penalised.sampling.repeat_last_n == 32
        together = [batched.submit(request(p)) for p in (1.0, 1.5)]
        assert [f.result(timeout=300).text for f in together] == [plain.text, penalised.text]
    finally:
        batched.close()


def test_both_engines_honour_a_catalog_rope_base_override():
    """rope_freq_base 10000 (what LangChain's LlamaCpp, the study's stack, passes for every
    model) changes SmolLM2's answer to a RAG-length prompt, and both engines apply it alike."""
    model, path = _model("smollm2-135m")
    request = _rag_requests("smollm2-135m", 3, 40)[2]
    studys = model.model_copy(update={"rope_freq_base": 10000.0})
    native = LlamaEngine(model, path, n_threads=2).generate(request).text
    single = LlamaEngine(studys, path, n_threads=2)
    assert single.llm.context_params.rope_freq_base == 10000.0
    overridden = single.generate(request).text
    batched = BatchedEngine(studys, path, n_threads=2, parallel=1, prefill_chunk=512)
    try:
        assert overridden != native
        assert batched.generate(request).text == overridden
    finally:
        batched.close()
