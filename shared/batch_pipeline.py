"""The three steps of answering one distinct question, as plain functions the Celery tasks call:
retrieve once (cpu), answer once per model (llm.<model>), score each question id (cpu)."""

from __future__ import annotations

import time

import numpy as np

from shared import batch_store
from shared.collection_cache import CollectionCache
from shared.prompts import fit_prompt
from shared.retrieval import retrieve
from shared.schemas import GenerationRequest


def unit_question(client, batch_id: str, unit: str) -> tuple[str, list[dict]]:
    """The question text of a unit and the question records (ids, references) it stands for."""
    ids = set(batch_store.units(client, batch_id)[unit])
    records = [q for q in batch_store.questions(client, batch_id) if q["id"] in ids]
    return records[0]["question"], records


def retrieve_contexts(cache: CollectionCache, embedder, batch: dict, question: str) -> dict:
    started = time.perf_counter()
    _, index = cache.get(batch["collection"], batch["version"])
    vector = embedder.embed([question])[0]
    params = batch["params"]
    hits = retrieve(index, question, vector, top_k=params["top_k"],
                    bm25_weight=params["bm25_weight"])
    contexts = [{"chunk": h.chunk, "score": h.score, "document": index.chunks[h.chunk].document,
                 "page": index.chunks[h.chunk].page, "text": index.chunks[h.chunk].text}
                for h in hits]
    return {"contexts": contexts, "retrieval_s": time.perf_counter() - started}


class OverTimeLimit(Exception):
    pass


def generate_answer(engine, batch: dict, model: str, question: str, retrieved: dict,
                    queue_s: float, time_limit_s: float | None = None) -> dict:
    """The model's answer with every timing; contexts trimmed to fit the context window."""
    started = time.perf_counter()
    started_at = time.time()
    max_tokens = batch["params"].get("max_tokens") or engine.model.max_tokens
    messages, kept, _ = fit_prompt(question, retrieved["contexts"], engine.count_tokens,
                                   engine.model.n_ctx, max_tokens)
    prompt_s = time.perf_counter() - started
    result = engine.generate(GenerationRequest(
        model=model, messages=messages, max_tokens=max_tokens,
        temperature=batch["params"].get("temperature"), time_budget_s=time_limit_s))
    if result.finish_reason == "time_limit":
        raise OverTimeLimit(f"generation exceeded the time limit of {time_limit_s:.0f} s")
    return {
        "answer": result.text,
        "finish_reason": result.finish_reason,
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "tokens_per_s": result.tokens_per_s,
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
        "backend": engine.backend,
        "started_at": started_at,  # wall clock, for gaps between a pool's tasks
        "finished_at": time.time(),
    }


def similarity(embedder, answer: str, reference: str) -> float:
    """Cosine similarity of the two texts' embeddings (normalised, so a dot product)."""
    vectors = embedder.embed([answer, reference])
    return float(np.dot(vectors[0], vectors[1]))
