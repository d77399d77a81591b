"""Answering a batch, step by step, as plain functions the Celery tasks call: retrieve once per
distinct question (a "unit"), answer once per model, score each question id.

Every decision lives here: whether a delivery is a duplicate, whether the batch was cancelled,
the time budget, whether to score, and how each failure is recorded. Each step is safe to run
twice (a redelivered task): results are stored exactly once by the batch store. A step returns
what should be sent next; the task sends it, so nothing here knows about Celery.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import redis

from shared.errors import UsageError
from shared.llm.engine import Engine
from shared.llm.memory import process_memory
from shared.llm.requests import GenerationRequest, SamplingOverrides
from shared.pipeline import checks, reference_free
from shared.pipeline.answer_ending import trim_to_last_sentence
from shared.pipeline.core_sharing import PoolsFirst, Yielding
from shared.retrieval.fusion import retrieve
from shared.retrieval.prompts import (
    BUILT_IN,
    DEFAULT_MIN_ANSWER_TOKENS,
    LEGACY_PROMPT,
    PromptTemplate,
    fit_prompt,
)
from shared.state import UNREACHABLE, batch_store
from shared.state.collection_cache import CollectionCache

log = logging.getLogger(__name__)


class OverTimeLimit(Exception):
    """The engine stopped an answer at its time budget."""


@dataclass(frozen=True)
class PoolStamp:
    """Which pool answered, stored with each answer."""

    worker: str  # Celery node name
    host: str
    parallel: int  # answers decoded together: latency is read with it


def unit_question(client: redis.Redis, batch_id: str, unit: str) -> tuple[str, list[dict]]:
    """The question text of a unit and the question records (ids, references) it stands for."""
    ids = set(batch_store.units(client, batch_id)[unit])
    records = [q for q in batch_store.questions(client, batch_id) if q["id"] in ids]
    return records[0]["question"], records


def record_all(client: redis.Redis, batch_id: str, records: list[dict], model: str, unit: str,
               outcome: str, **fields) -> None:
    """Settle every question of a unit for a model that has no result yet."""
    retrieved = batch_store.contexts(client, batch_id, unit)
    for question in records:
        if not batch_store.has_result(client, batch_id, question["id"], model):
            batch_store.record(client, batch_id, question["id"], model,
                               batch_store.result_record(
                                   question, model, unit,
                                   retrieval=cited_rank(question, retrieved), **fields),
                               outcome)


def cited_rank(question: dict, retrieved: dict | None) -> dict | None:
    """Where the pages the reference cites ([file.pdf#page=N]) ranked among the retrieved
    contexts: rank from 1 of the first cited page found, None when none was retrieved. None
    for a question that cites nothing (or whose retrieval failed): no retrieval metric."""
    cited = question.get("sources") or []
    if not cited or retrieved is None:
        return None
    hits = [f"{c['document']}#page={c['page']}" for c in retrieved["contexts"]]
    rank = next((i for i, hit in enumerate(hits, start=1) if hit in cited), None)
    return {"cited": list(cited), "rank": rank, "k": len(hits)}


def record_failure(client: redis.Redis, batch_id: str, unit: str, model: str,
                   reason: str) -> None:
    """A model's answer to a unit failed outside the step (its process was killed)."""
    _, records = unit_question(client, batch_id, unit)
    record_all(client, batch_id, records, model, unit, "failed", error=reason)


def record_retrieval_failure(client: redis.Redis, batch_id: str, unit: str,
                             models: list[str] | None, reason: str) -> None:
    """A unit's retrieval failed outside the step: every model's pairs of the unit fail."""
    _, records = unit_question(client, batch_id, unit)
    for model in models or batch_store.get(client, batch_id)["models"]:
        record_all(client, batch_id, records, model, unit, "failed",
                   error=f"retrieval failed: {reason}")


def record_scoring_failure(client: redis.Redis, batch_id: str, question_id: str, unit: str,
                           model: str, reason: str) -> None:
    """Scoring one answer failed outside the step: the pair fails, its answer kept."""
    if batch_store.has_result(client, batch_id, question_id, model):
        return
    (question,) = [q for q in batch_store.questions(client, batch_id) if q["id"] == question_id]
    batch_store.record(client, batch_id, question_id, model, batch_store.result_record(
        question, model, unit, answer=batch_store.answer(client, batch_id, unit, model),
        retrieval=cited_rank(question, batch_store.contexts(client, batch_id, unit)),
        error=f"scoring failed: {reason}"), "failed")


def reason(exc: BaseException) -> str:
    """A failure's stored reason, never empty (str(MemoryError()) is ''): an empty error would
    count as an answer."""
    return str(exc).strip() or type(exc).__name__


def _stopping(client: redis.Redis, batch_id: str) -> bool:
    return batch_store.status(client, batch_id) in (batch_store.CANCELLING,
                                                    batch_store.CANCELLED)


# -- step 1: retrieve (cpu) -------------------------------------------------------------------

def retrieve_unit(client: redis.Redis, indexes: CollectionCache, embedder, batch_id: str,
                  unit: str, models: list[str] | None = None) -> list[str]:
    """Retrieve the contexts of one unit (once: a redelivery reuses them). Returns the models
    whose answer should now be asked for; none when the batch is stopping or retrieval failed
    (then every pair of the unit is settled here)."""
    batch = batch_store.get(client, batch_id)
    question, records = unit_question(client, batch_id, unit)
    models = models or batch["models"]
    if _stopping(client, batch_id):
        for model in models:
            record_all(client, batch_id, records, model, unit, "cancelled", cancelled=True)
        return []
    batch_store.mark_started(client, batch_id)
    if batch_store.contexts(client, batch_id, unit) is None:
        try:
            retrieved = retrieve_contexts(indexes, embedder, batch, question)
        except UNREACHABLE:
            raise  # loading the collection met a Redis outage: not the question's failure
        except Exception as exc:  # the collection version vanished, or a bug: fail, do not loop
            log.exception("retrieval failed for %s/%s", batch_id, unit)
            for model in models:
                record_all(client, batch_id, records, model, unit, "failed",
                           error=f"retrieval failed: {reason(exc)}")
            return []
        batch_store.save_contexts(client, batch_id, unit, retrieved)
    return list(models)


def retrieve_contexts(indexes: CollectionCache, embedder, batch: dict, question: str) -> dict:
    started = time.perf_counter()
    meta, index = indexes.get(batch["collection"], batch["version"])
    from shared.retrieval.embeddings import matching

    # embedded as the collection was: fp32 on either backend, its own embedder if int8
    vector = matching(embedder, meta.embedder_id()).embed([question])[0]
    params = batch["params"]
    hits = retrieve(index, question, vector, top_k=params["top_k"],
                    bm25_weight=params["bm25_weight"])
    contexts = [{"chunk": h.chunk, "score": h.score, "document": index.chunks[h.chunk].document,
                 "page": index.chunks[h.chunk].page, "text": index.chunks[h.chunk].text}
                for h in hits]
    return {"contexts": contexts, "retrieval_s": time.perf_counter() - started}


# -- step 2: answer (llm.<model>) -------------------------------------------------------------

def answer_unit(client: redis.Redis, engine: Callable[[], Engine], batch_id: str, unit: str,
                model: str, enqueued_at: float, pool: PoolStamp, budget_s: float,
                limit_s: float, over_time: tuple[type[BaseException], ...] = ()) -> list[str]:
    """This pool's answer to one unit, generated at most once. Returns the question ids to score:
    all of them (cosine where there is a reference, the reference-free scores for every one).

    engine: returns the loaded engine (waiting for it to load; raising if it could not).
    budget_s: the engine stops decoding this long after the step began (the soft limit).
    limit_s: the hard limit named in the failure. over_time: exceptions that also mean the time
    ran out (the task runner's soft-limit signal)."""
    started = time.time()
    question, records = unit_question(client, batch_id, unit)
    if all(batch_store.has_result(client, batch_id, q["id"], model) for q in records):
        return []  # a duplicate delivery: everything is stored already
    if _stopping(client, batch_id):
        record_all(client, batch_id, records, model, unit, "cancelled", cancelled=True)
        return []
    if batch_store.answer(client, batch_id, unit, model) is None:
        batch = batch_store.get(client, batch_id)
        retrieved = batch_store.contexts(client, batch_id, unit)
        try:
            loaded = engine()
            if loaded.model.name != model:
                raise UsageError(f"an answer for {model!r} reached the pool of "
                                 f"{loaded.model.name!r}")
            result = generate_answer(loaded, batch, model, question, retrieved,
                                     queue_s=max(0.0, started - enqueued_at),
                                     time_limit_s=max(1.0, budget_s - (time.time() - started)),
                                     repeat=records[0].get("repeat", 1))
        except (OverTimeLimit, *over_time):
            record_all(client, batch_id, records, model, unit, "failed",
                       error=f"generation exceeded the time limit of {limit_s:.0f} s")
            return []
        except Exception as exc:  # model failed to load, prompt cannot fit, llama.cpp error
            log.warning("answer failed for %s/%s on %s: %s", batch_id, unit, model, exc)
            record_all(client, batch_id, records, model, unit, "failed", error=reason(exc))
            return []
        result.update(worker=pool.worker, host=pool.host, parallel=pool.parallel)
        batch_store.save_answer(client, batch_id, unit, model, result,  # the first one wins
                                questions=len(records))
    return [q["id"] for q in records if not batch_store.has_result(client, batch_id, q["id"],
                                                                    model)]


def generate_answer(engine: Engine, batch: dict, model: str, question: str, retrieved: dict,
                    queue_s: float, time_limit_s: float | None = None, repeat: int = 1) -> dict:
    """The model's answer with every timing; contexts trimmed to fit the context window, the
    answer capped at the room left. The k-th repeat of a question samples with seed + k - 1."""
    started = time.perf_counter()
    started_at = time.time()
    params = batch["params"]
    template = batch_prompt(params, model)
    # a batch without --top-k gives each model its own number of the best-ranked contexts
    given = retrieved["contexts"][:params.get("contexts_per_model", {}).get(model)]
    fitted = fit_prompt(question, given, engine.count_tokens, engine.model.n_ctx,
                        params.get("max_tokens") or engine.model.max_tokens, template,
                        params.get("min_answer_tokens") or DEFAULT_MIN_ANSWER_TOKENS)
    prompt_s = time.perf_counter() - started
    sampling = batch_sampling(params)
    if repeat > 1:
        base = engine.model.seed if sampling.seed is None else sampling.seed
        sampling = sampling.model_copy(update={"seed": base + repeat - 1})
    result = engine.generate(GenerationRequest(
        model=model, messages=fitted.messages, max_tokens=fitted.max_tokens,
        time_budget_s=time_limit_s, **sampling.model_dump(exclude_none=True)))
    if result.finish_reason == "time_limit":
        raise OverTimeLimit(f"generation exceeded the time limit of {time_limit_s:.0f} s")
    kept = fitted.contexts_kept
    answer, cut_tail = result.text, ""
    if result.finish_reason == "length" and params.get("trim_cut"):
        answer, cut_tail = trim_to_last_sentence(result.text)
    return {
        "answer": answer,
        "cut_tail": cut_tail,  # what trimming a cut answer to its last sentence dropped
        "finish_reason": result.finish_reason,
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "max_tokens": fitted.max_tokens,  # the cap it ran with
        "tokens_per_s": result.tokens_per_s,
        "sampling": result.sampling.model_dump() if result.sampling else None,
        "prompt": template.label,
        "contexts_used": kept,
        "pages": [f"{c['document']}#page={c['page']}" for c in retrieved["contexts"][:kept]],
        "retrieval_s": retrieved["retrieval_s"],
        "queue_s": queue_s,
        "prompt_s": prompt_s,
        "ttft_s": result.ttft_s,
        "generation_s": result.generation_s,
        "response_s": result.total_s,  # the model's time to answer: the study's resp_time
        "total_s": retrieved["retrieval_s"] + queue_s + prompt_s + result.total_s,
        "model_file": engine.path.name,
        "model_size": engine.path.stat().st_size,
        "quantization": engine.quantization,
        "load_s": engine.load_s,
        "backend": engine.backend,
        **{f"pool_{k}": v for k, v in process_memory().items()},  # pool_rss_bytes, pool_peak..
        "started_at": started_at,  # wall clock, for gaps between a pool's tasks
        "finished_at": time.time(),
    }


def batch_prompt(params: dict, model: str | None = None) -> PromptTemplate:
    """The template a batch was created with for this model (stored whole, so a worker on any
    machine has it): the model's own where its catalog names one and the batch did not, else
    the batch's; batches from before templates used the default one."""
    stored = params.get("prompts_per_model", {}).get(model) or params.get("prompt")
    return PromptTemplate.model_validate(stored) if stored else BUILT_IN[LEGACY_PROMPT]


def batch_sampling(params: dict) -> SamplingOverrides:
    """The sampling settings a batch asked for (unset ones take each model's catalog values);
    batches from before these settings recorded only a temperature."""
    return SamplingOverrides(**params.get("sampling", {"temperature": params.get("temperature")}))


# -- step 3: score (cpu) ----------------------------------------------------------------------

# How long one answer's scoring may wait, in all, for the model pools of its host (then it
# goes on with one core beside them): scoring is ~0.5 s of one core per answer and slows a
# pool's prompt evaluation beside it; waiting defers it to the gaps and the batch's end. The
# bound keeps a cpu process from being held longer than this, so another batch's retrieval
# queued behind a waiting score starts within it.
SCORE_MAX_PAUSE_S = 60.0


def score_result(client: redis.Redis, embedder, batch_id: str, question_id: str, unit: str,
                 model: str, threads: PoolsFirst | None = None) -> bool:
    """Cosine similarity of the stored answer and the question's reference (where it has one),
    with the retrieval embedder; the reference-free scores (groundedness, answer and context
    relevance: shared.pipeline.reference_free) of every answer; and the question's checks
    (contains, regex, exact). Returns False when the pair was settled already (a duplicate
    delivery). A scoring error settles the pair as failed, so the batch never waits for it.
    `threads` (a worker's PoolsFirst): the embedding waits while a model pool of this host
    generates; `score_wait_s` records the wait, `score_s` the work."""
    if batch_store.has_result(client, batch_id, question_id, model):
        return False
    (question,) = [q for q in batch_store.questions(client, batch_id) if q["id"] == question_id]
    stored = batch_store.answer(client, batch_id, unit, model)
    retrieved = batch_store.contexts(client, batch_id, unit)
    retrieval = cited_rank(question, retrieved)
    started = time.perf_counter()
    if threads is not None:
        embedder = Yielding(embedder, threads)
    try:
        cosine = (similarity(embedder, stored["answer"], question["reference"])
                  if question.get("reference") else None)
        given = [c["text"] for c in (retrieved or {}).get("contexts", [])][
            :stored.get("contexts_used") or 0]
        stored = {**with_checks(stored, question),
                  **reference_free.scores(embedder, question["question"], stored["answer"],
                                          given)}
    except Exception as exc:  # the embedder failed: record it rather than leave the pair open
        log.exception("scoring failed for %s/%s on %s", batch_id, question_id, model)
        return batch_store.record(
            client, batch_id, question_id, model,
            batch_store.result_record(question, model, unit, answer=stored, retrieval=retrieval,
                                      error=f"scoring failed: {reason(exc)}"), "failed")
    waited = threads.waited_s if threads is not None else 0.0
    stored = {**stored, "score_s": time.perf_counter() - started - waited,
              "score_wait_s": waited}
    return batch_store.record(client, batch_id, question_id, model,
                              batch_store.result_record(question, model, unit, answer=stored,
                                                        cosine=cosine, retrieval=retrieval),
                              "completed")


def with_checks(stored: dict, question: dict) -> dict:
    """The stored answer with the outcome of the question's checks: `checks` (name -> passed)
    and `checks_passed`, both None for a question without checks."""
    return {**stored, **checks.result_fields(question, stored.get("answer"))}


def similarity(embedder, answer: str, reference: str) -> float:
    """Cosine similarity of the two texts' embeddings (normalised, so a dot product)."""
    vectors = embedder.embed([answer, reference])
    return float(np.dot(vectors[0], vectors[1]))
