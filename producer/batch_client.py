"""Producer side of batches: validate everything, create the batch, enqueue, wait."""

from __future__ import annotations

import hashlib
from pathlib import Path

import redis

from broker.queues import RETRIEVE_TASK, llm_queue
from producer import polling
from shared.config import Settings
from shared.errors import UsageError
from shared.llm.catalog import Catalog
from shared.llm.requests import SamplingOverrides
from shared.pipeline.questions import read_questions
from shared.retrieval.prompts import get_prompt
from shared.state import batch_store, collection_store
from shared.state.registry import live_workers


def unit_id(question: str) -> str:
    return "u-" + hashlib.sha1(" ".join(question.split()).encode()).hexdigest()[:12]


def batch_params(settings: Settings, top_k: int | None, bm25_weight: float,
                 max_tokens: int | None,
                 sampling: SamplingOverrides, prompt: str | None, trim_cut: bool = True) -> dict:
    """What a batch records of how it was asked: retrieval (top_k None: each model's catalog
    number of contexts, filled in by `submit`), the answer's length (and whether
    an answer stopped at max_tokens is trimmed to its last complete sentence), sampling
    overrides (unset: each model's catalog values) and the whole prompt template, so a worker
    on any machine renders the same prompt."""
    template = get_prompt(prompt or settings.prompt, settings.prompts_path)
    return {"top_k": top_k, "bm25_weight": bm25_weight, "max_tokens": max_tokens,
            "trim_cut": trim_cut, "min_answer_tokens": settings.min_answer_tokens,
            "sampling": sampling.model_dump(exclude_none=True), "prompt": template.model_dump(),
            # a prompt the user chose (--prompt, or RAGFLEET_PROMPT set) is every model's
            "prompt_named": prompt is not None or "prompt" in settings.model_fields_set}


def per_model_contexts(params: dict, catalog: Catalog, models: list[str]) -> dict:
    """A batch that names no top-k: each model answers from its catalog number of contexts (the
    best-ranked ones), and retrieval fetches as many as the most any of them uses."""
    if params["top_k"] is not None:
        return params
    counts = {name: catalog.get(name).contexts for name in models}
    return {**params, "top_k": max(counts.values()), "contexts_per_model": counts}


def per_model_prompts(params: dict, catalog: Catalog, models: list[str],
                      prompts_path: Path | None = None) -> dict:
    """A batch that names no prompt: a model whose catalog names its own template answers with
    it (stored whole, as the batch's own is), the others with the batch's."""
    if params.get("prompt_named") or "prompts_per_model" in params:
        return params
    own = {name: get_prompt(catalog.get(name).prompt, prompts_path).model_dump()
           for name in models if catalog.get(name).prompt}
    return {**params, "prompts_per_model": {
        name: template for name, template in own.items() if template != params["prompt"]}}


def per_model(params: dict, catalog: Catalog, models: list[str],
              prompts_path: Path | None = None) -> dict:
    """The batch's params with each model's catalog defaults where the batch named none."""
    return per_model_prompts(per_model_contexts(params, catalog, models), catalog, models,
                             prompts_path)


def check_pools(client: redis.Redis, models: list[str], queue_anyway: bool) -> list[str]:
    """Models that have no live pool; an error unless the user said to queue anyway."""
    online = {q for w in live_workers(client) if w.get("state") != "failed" for q in w["queues"]}
    missing = [m for m in models if llm_queue(m) not in online]
    if missing and not queue_anyway:
        raise UsageError(
            f"no running pool for {', '.join(missing)}: start one (`ragfleet up --model "
            f"{missing[0]}` or `ragfleet worker --model {missing[0]}`), or pass --queue-anyway"
        )
    return missing


def submit(app, client: redis.Redis, catalog: Catalog, questions_path: Path, collection: str,
           models: list[str], params: dict, queue_anyway: bool, limit: int | None = None,
           repeat: int = 1, prompts_path: Path | None = None) -> tuple[str, list[str]]:
    """Returns the batch id and the models queued without a pool. Nothing is enqueued unless
    every check passes. limit: only the first questions; repeat: each asked that many times
    (ids QID#1..QID#N, each answered apart, with seeds seed..seed+N-1)."""
    if not models:
        raise UsageError("give at least one --model")
    if len(set(models)) != len(models):
        raise UsageError("a --model is given twice")
    for name in models:
        model = catalog.get(name)
        # the answer's minimum room must leave the prompt some: a larger max_tokens is capped
        room = min(params["max_tokens"] or model.max_tokens, params["min_answer_tokens"])
        if room >= model.n_ctx - 64:
            raise UsageError(f"--max-tokens {room} leaves no room for the prompt in "
                             f"{name}'s n_ctx of {model.n_ctx}")
    params = per_model(params, catalog, models, prompts_path)
    questions = read_questions(questions_path)[:limit]
    version = collection_store.current_version(client, collection_store.check_name(collection))
    if version is None:
        raise UsageError(f"unknown collection {collection!r} (see `ragfleet collections`)")
    without_pool = check_pools(client, models, queue_anyway)

    records = repeated(questions, repeat)
    units: dict[str, list[str]] = {}
    for q in records:  # identical questions are answered once, reported for each id
        suffix = f"-r{q['repeat']}" if repeat > 1 else ""
        units.setdefault(unit_id(q["question"]) + suffix, []).append(q["id"])
    batch_id = batch_store.new_id()
    meta = {"collection": collection, "version": version, "models": models, "params": params,
            "questions_file": str(questions_path), "questions": len(records), "units": len(units),
            "limit": limit, "repeat": repeat}
    batch_store.create(client, batch_id, meta, records, units)
    for unit in units:
        app.send_task(RETRIEVE_TASK, args=[batch_id, unit])
        batch_store.mark_sent(client, batch_id, unit)  # if interrupted, --resume sends the rest
    return batch_id, without_pool


def repeated(questions: list, repeat: int) -> list[dict]:
    """The question records of a batch: each question once, or `repeat` times (for the spread
    of answers when sampling at a temperature above 0)."""
    if repeat == 1:
        return [q.to_json() for q in questions]
    return [{**q.to_json(), "id": f"{q.id}#{k}", "base_id": q.id, "repeat": k}
            for q in questions for k in range(1, repeat + 1)]


def resume(app, client: redis.Redis, batch_id: str) -> int:
    """Run again what failed or was cancelled, and send what an interrupted ask (or resume) did
    not; returns how many (question, model) pairs. A unit sent twice is harmless: each result
    is stored once."""
    batch_store.reopen(client, batch_id)
    todo = batch_store.unsent(client, batch_id)
    for unit, pairs in todo.items():
        if pairs:
            app.send_task(RETRIEVE_TASK, args=[batch_id, unit, sorted({m for _, m in pairs})])
        batch_store.mark_sent(client, batch_id, unit)
    return sum(len(pairs) for pairs in todo.values())


def wait(client: redis.Redis, batch_id: str, on_progress=None, poll_s: float = 0.5,
         timeout_s: float | None = None) -> dict:
    return polling.until_finished(lambda: batch_store.get(client, batch_id),
                                  lambda b: b["status"] in batch_store.FINISHED,
                                  f"batch {batch_id}", on_progress, poll_s, timeout_s)
