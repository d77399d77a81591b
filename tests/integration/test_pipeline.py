"""The decisions of each step (shared.pipeline) against a real Redis, with a small scripted engine
and a small deterministic embedder standing in for the models: what is under test is storing,
deduplicating, cancelling, budgeting and failing, not the models (the e2e tests run those)."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import redis

from shared.config import Settings
from shared.errors import ModelUnavailable, UsageError
from shared.llm.catalog import ModelSettings
from shared.llm.requests import ChatMessage, GenerationRequest, GenerationResult
from shared.pipeline import answering, core_sharing, ingest_job
from shared.pipeline.core_sharing import PoolsFirst
from shared.pipeline.ingestion import index_cache
from shared.retrieval import indexes
from shared.retrieval.chunking import Chunk
from shared.state import batch_store, collection_store, jobs, keys, uploads
from shared.state.collection_store import Manifest
from tests.pdf_samples import first_pages_pdf, truncated_pdf

pytestmark = pytest.mark.integration

MODELS = ["small", "big"]
STAMP = answering.PoolStamp(worker="small-1@host", host="host", parallel=1)


class WordEmbedder:
    """Deterministic bag-of-words vectors: texts sharing words are close. Counts its calls."""

    name = "word-hash-16"
    dim = 16

    def __init__(self, fail: BaseException | None = None):
        self.calls = 0
        self.fail = fail

    def embed(self, texts: list[str], progress=None, threads=None) -> np.ndarray:
        self.calls += 1
        if self.fail:
            raise self.fail
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in indexes.tokenize(text):
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1.0
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)
        if progress:
            progress(len(texts), len(texts))
        return out


class ScriptedEngine:
    """Implements shared.llm.engine.Engine: answers from a script, records every request."""

    def __init__(self, path: Path, name: str = "small", reply: str = "The deductible is $2,000.",
                 finish_reason: str = "stop", raises: BaseException | None = None):
        self.model = ModelSettings(name=name, file=path.name, n_ctx=2048, max_tokens=64)
        self.path = path
        self.backend, self.load_s, self.quantization = "cpu", 0.5, "Q4_1"
        self.reply, self.finish_reason, self.raises = reply, finish_reason, raises
        self.requests: list[GenerationRequest] = []

    def count_tokens(self, messages: list[ChatMessage]) -> int:
        return sum(len(m.content.split()) for m in messages)

    def generate(self, request: GenerationRequest) -> GenerationResult:
        self.requests.append(request)
        if self.raises:
            raise self.raises
        return GenerationResult(text=self.reply, finish_reason=self.finish_reason,
                                prompt_tokens=self.count_tokens(request.messages),
                                completion_tokens=6, ttft_s=0.01, generation_s=0.05,
                                total_s=0.06, tokens_per_s=100.0)


@pytest.fixture()
def redis_client(redis_url) -> redis.Redis:
    """Bytes in, bytes out, as the workers' client (index parts are binary)."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    return client


@pytest.fixture()
def model_file(tmp_path) -> Path:
    path = tmp_path / "scripted.gguf"
    path.write_bytes(b"GGUF" + bytes(60))
    return path


@pytest.fixture()
def collection(redis_client) -> int:
    """A two-page collection stored as ingestion stores it."""
    chunks = [Chunk("plan.pdf", 1, "The annual deductible is $2,000 per person."),
              Chunk("plan.pdf", 2, "Dental cleanings are covered twice a year.")]
    vectors = WordEmbedder().embed([c.text for c in chunks])
    meta = Manifest(name="plan", version=0, documents=[{"name": "plan.pdf", "pages": 2}],
                    chunks=2, embedding_model=WordEmbedder.name, dim=16, chunk_size=1000,
                    chunk_overlap=150)
    return collection_store.save(redis_client, meta, indexes.encode(
        chunks, vectors, [indexes.tokenize(c.text) for c in chunks]),
        base=collection_store.current_version(redis_client, meta.name))


def make_batch(client, version: int, batch_id: str = "b-test", models=MODELS,
               **params) -> str:
    """Two ids ask the same question (one unit); one more question has no reference."""
    questions = [
        {"id": "q1", "question": "What is the deductible?", "reference": "It is $2,000."},
        {"id": "q2", "question": "What is the deductible?", "reference": "$2,000 a person."},
        {"id": "q3", "question": "Are cleanings covered?", "reference": None},
    ]
    meta = {"collection": "plan", "version": version, "models": list(models),
            "params": {"top_k": 2, "bm25_weight": 0.3, "max_tokens": 32, "temperature": None,
                       **params}}
    batch_store.create(client, batch_id, meta, questions, {"u1": ["q1", "q2"], "u2": ["q3"]})
    return batch_id


def outcomes(client, batch_id: str) -> dict[tuple[str, str], str]:
    """(question id, model) -> completed / failed / cancelled, from the stored results."""
    found = {}
    for r in batch_store.results(client, batch_id):
        found[(r["question_id"], r["model"])] = (
            "cancelled" if r["cancelled"] else "failed" if r["error"] else "completed")
    return found


def answer(client, engine, unit="u1", model="small", budget_s=60.0, over_time=()):
    return answering.answer_unit(client, lambda: engine, "b-test", unit, model, 0.0, STAMP,
                                 budget_s=budget_s, limit_s=600, over_time=over_time)


# -- the exactly-once script ------------------------------------------------------------------

def test_record_stores_one_result_under_concurrent_duplicate_delivery(redis_client):
    batch_store.create(redis_client, "b-once", {"collection": "c", "version": 1,
                                                "models": ["m"], "params": {}},
                       [{"id": "q", "question": "?"}, {"id": "r", "question": "!"}],
                       {"u": ["q"], "v": ["r"]})
    stored, barrier = [], threading.Barrier(8)

    def deliver(n: int) -> None:
        barrier.wait()
        record = batch_store.result_record({"id": "q", "question": "?"}, "m", "u",
                                           answer={"answer": f"copy {n}"}, cosine=0.5)
        stored.append(batch_store.record(redis_client, "b-once", "q", "m", record, "completed"))

    threads = [threading.Thread(target=deliver, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert stored.count(True) == 1 and stored.count(False) == 7
    batch = batch_store.get(redis_client, "b-once")
    assert (batch["completed"], batch["failed"], batch["status"]) == (1, 0, "running")
    assert len(batch_store.results(redis_client, "b-once")) == 1
    # the last pair settles the batch; failed counts, and a late duplicate changes nothing
    failed = batch_store.result_record({"id": "r", "question": "!"}, "m", "v", error="x")
    assert batch_store.record(redis_client, "b-once", "r", "m", failed, "failed")
    assert not batch_store.record(redis_client, "b-once", "r", "m", failed, "completed")
    batch = batch_store.get(redis_client, "b-once")
    assert (batch["completed"], batch["failed"], batch["status"]) == (1, 1, "completed")
    assert batch["per_model"]["m"] == {"completed": 1, "failed": 1, "cancelled": 0}


def test_a_batch_where_nothing_succeeded_ends_failed(redis_client):
    batch_store.create(redis_client, "b-none", {"collection": "c", "version": 1,
                                                "models": ["m"], "params": {}},
                       [{"id": "q", "question": "?"}], {"u": ["q"]})
    failed = batch_store.result_record({"id": "q", "question": "?"}, "m", "u", error="boom")
    batch_store.record(redis_client, "b-none", "q", "m", failed, "failed")
    assert batch_store.get(redis_client, "b-none")["status"] == "failed"


# -- retrieve, answer, score ------------------------------------------------------------------

def test_each_step_stores_every_pair_once_and_duplicates_change_nothing(redis_client,
                                                                        collection, model_file):
    client, embedder = redis_client, WordEmbedder()
    cache = index_cache(client)
    make_batch(client, collection)
    engines = {m: ScriptedEngine(model_file, name=m) for m in MODELS}

    assert answering.retrieve_unit(client, cache, embedder, "b-test", "u1") == MODELS
    retrieved = batch_store.contexts(client, "b-test", "u1")
    assert retrieved["contexts"][0]["page"] == 1  # the deductible page ranks first
    calls = embedder.calls
    # a redelivered retrieval reuses the stored contexts (and sends the answers again)
    assert answering.retrieve_unit(client, cache, embedder, "b-test", "u1") == MODELS
    assert embedder.calls == calls and batch_store.contexts(client, "b-test", "u1") == retrieved

    for model in MODELS:
        to_score = answer(client, engines[model], model=model)
        assert to_score == ["q1", "q2"]  # both ids of the unit have a reference
        assert len(engines[model].requests) == 1
        # redelivered before scoring: not generated again, scoring asked for again
        assert answer(client, engines[model], model=model) == ["q1", "q2"]
        assert len(engines[model].requests) == 1
        for qid in to_score:
            assert answering.score_result(client, embedder, "b-test", qid, "u1", model)
            assert not answering.score_result(client, embedder, "b-test", qid, "u1", model)
        # redelivered after scoring: nothing to do at all
        assert answer(client, engines[model], model=model) == []

    assert answering.retrieve_unit(client, cache, embedder, "b-test", "u2") == MODELS
    for model in MODELS:
        # no reference: no cosine, but the reference-free scores, in the scoring step too
        assert answer(client, engines[model], unit="u2", model=model) == ["q3"]
        assert answering.score_result(client, embedder, "b-test", "q3", "u2", model)

    batch = batch_store.get(client, "b-test")
    assert (batch["completed"], batch["failed"], batch["status"]) == (6, 0, "completed")
    assert batch["answered"] == {m: 3 for m in MODELS}  # redeliveries counted nothing twice
    results = {(r["question_id"], r["model"]): r for r in batch_store.results(client, "b-test")}
    assert len(results) == 6
    scored = results[("q1", "small")]
    expected = answering.similarity(embedder, "The deductible is $2,000.", "It is $2,000.")
    assert scored["cosine"] == pytest.approx(expected)
    assert scored["worker"] == STAMP.worker and scored["parallel"] == 1
    assert scored["pages"] == ["plan.pdf#page=1", "plan.pdf#page=2"]
    assert scored["load_s"] == 0.5 and scored["quantization"] == "Q4_1"
    assert 0 < scored["pool_rss_bytes"] <= scored["pool_peak_rss_bytes"]  # this process's
    assert results[("q3", "big")]["cosine"] is None and results[("q3", "big")]["error"] is None
    for result in results.values():  # every answer, with or without a reference
        assert 0 <= result["groundedness"] <= 1 and result["answer_relevance"] is not None
        assert result["context_relevance"] is not None
    assert cache.loads == 1  # one load of the version for every retrieval of the process


def test_prompt_carries_the_retrieved_contexts_and_the_batch_settings(redis_client, collection,
                                                                      model_file):
    make_batch(redis_client, collection)
    answering.retrieve_unit(redis_client, index_cache(redis_client), WordEmbedder(), "b-test", "u1")
    engine = ScriptedEngine(model_file)
    answer(redis_client, engine, budget_s=42.0)
    (request,) = engine.requests
    assert request.max_tokens == 32 and request.model == "small"
    assert 0 < request.time_budget_s <= 42.0
    prompt = " ".join(m.content for m in request.messages)
    assert "annual deductible is $2,000" in prompt and "What is the deductible?" in prompt


def test_each_model_answers_from_its_own_number_of_the_best_contexts(redis_client, collection,
                                                                    model_file):
    batch_id = make_batch(redis_client, collection, contexts_per_model={"small": 1, "big": 2})
    answering.retrieve_unit(redis_client, index_cache(redis_client), WordEmbedder(), batch_id,
                            "u1")
    retrieved = batch_store.contexts(redis_client, batch_id, "u1")["contexts"]
    assert len(retrieved) == 2  # retrieval fetched what the model using most needs
    for model, count in (("small", 1), ("big", 2)):
        engine = ScriptedEngine(model_file, name=model)
        answer(redis_client, engine, model=model)
        prompt = " ".join(m.content for m in engine.requests[0].messages)
        given = [c["text"] for c in retrieved[:count]]
        assert all(text in prompt for text in given)
        assert all(c["text"] not in prompt for c in retrieved[count:])
        stored = batch_store.answer(redis_client, batch_id, "u1", model)
        assert stored["contexts_used"] == count and len(stored["pages"]) == count


def test_a_model_with_its_own_prompt_answers_with_it_and_the_others_with_the_batchs(
        redis_client, collection, model_file):
    from shared.retrieval.prompts import BUILT_IN

    batch_id = make_batch(redis_client, collection, prompt=BUILT_IN["sentences"].model_dump(),
                          prompts_per_model={"big": BUILT_IN["study"].model_dump()})
    answering.retrieve_unit(redis_client, index_cache(redis_client), WordEmbedder(), batch_id,
                            "u1")
    for model, template in (("small", "sentences"), ("big", "study")):
        engine = ScriptedEngine(model_file, name=model)
        answer(redis_client, engine, model=model)
        system = engine.requests[0].messages[0].content
        assert system.startswith(BUILT_IN[template].system.split("{")[0][:40])
        assert batch_store.answer(redis_client, batch_id, "u1", model)["prompt"] == \
            BUILT_IN[template].label


def test_cancelled_batch_is_settled_without_generating(redis_client, collection, model_file):
    make_batch(redis_client, collection)
    cache, embedder = index_cache(redis_client), WordEmbedder()
    answering.retrieve_unit(redis_client, cache, embedder, "b-test", "u1")
    # cancelling: the status is set first, pairs are settled after (batch_store.cancel)
    redis_client.hset(keys.batch_key("b-test"), "status", batch_store.CANCELLING)
    engine = ScriptedEngine(model_file)
    assert answer(redis_client, engine) == []
    assert engine.requests == []
    assert answering.retrieve_unit(redis_client, cache, embedder, "b-test", "u2") == []
    found = outcomes(redis_client, "b-test")
    assert found[("q1", "small")] == found[("q3", "big")] == "cancelled"
    assert ("q1", "big") not in found  # its own answer task settles it


class CoresGiven(PoolsFirst):
    """PoolsFirst that records what it answered (the cores scoring may use)."""

    def __init__(self, *args):
        super().__init__(*args)
        self.given: list[int] = []

    def __call__(self) -> int:
        self.given.append(super().__call__())
        return self.given[-1]


def test_scoring_waits_while_a_pool_of_this_host_generates_and_records_the_wait(
        redis_client, collection, model_file):
    import socket

    from shared.state import registry

    make_batch(redis_client, collection)
    embedder = WordEmbedder()
    answering.retrieve_unit(redis_client, index_cache(redis_client), embedder, "b-test", "u2")
    assert answer(redis_client, ScriptedEngine(model_file), unit="u2") == ["q3"]
    slept = []

    def generation_ends(seconds):  # the pool finishes its answer while the score waits
        slept.append(seconds)
        time.sleep(seconds)
        if len(slept) == 3:
            redis_client.delete(keys.generating_key(socket.gethostname()))

    with registry.generating(redis_client, socket.gethostname(), "answer-1", ttl_s=60):
        threads = CoresGiven(redis_client, 60, generation_ends)
        assert answering.score_result(redis_client, embedder, "b-test", "q3", "u2", "small",
                                      threads=threads)
    (scored,) = [r for r in batch_store.results(redis_client, "b-test") if r["question_id"] == "q3"]
    assert slept == [core_sharing.PAUSE_STEP_S] * 3
    assert scored["score_wait_s"] >= 3 * core_sharing.PAUSE_STEP_S
    assert scored["groundedness"] is not None and scored["score_s"] >= 0
    assert threads.given and set(threads.given) == {os.cpu_count() or 1}  # asked every batch


def test_scoring_goes_on_with_one_core_when_its_pause_budget_is_spent(redis_client, collection,
                                                                      model_file):
    import socket

    from shared.state import registry

    make_batch(redis_client, collection)
    embedder = WordEmbedder()
    answering.retrieve_unit(redis_client, index_cache(redis_client), embedder, "b-test", "u2")
    answer(redis_client, ScriptedEngine(model_file), unit="u2")
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        time.sleep(seconds)

    with registry.generating(redis_client, socket.gethostname(), "a-long-answer", ttl_s=60):
        threads = CoresGiven(redis_client, 1.0, sleep)
        assert answering.score_result(redis_client, embedder, "b-test", "q3", "u2", "small",
                                      threads=threads)
    (scored,) = [r for r in batch_store.results(redis_client, "b-test") if r["question_id"] == "q3"]
    assert sum(slept) == pytest.approx(1.0) and not scored.get("error")
    assert scored["score_wait_s"] >= 1.0 and set(threads.given) == {1}


def test_cancel_settles_every_open_pair_and_keeps_finished_ones(redis_client, collection,
                                                                model_file):
    make_batch(redis_client, collection)
    answering.retrieve_unit(redis_client, index_cache(redis_client), WordEmbedder(), "b-test", "u2")
    assert answer(redis_client, ScriptedEngine(model_file), unit="u2") == ["q3"]
    assert answering.score_result(redis_client, WordEmbedder(), "b-test", "q3", "u2", "small")
    assert batch_store.cancel(redis_client, "b-test") == "cancelled"
    found = outcomes(redis_client, "b-test")
    assert found.pop(("q3", "small")) == "completed"
    assert set(found.values()) == {"cancelled"} and len(found) == 5


def test_answer_stopped_at_its_time_budget_fails_with_the_limit(redis_client, collection,
                                                                model_file):
    make_batch(redis_client, collection)
    answering.retrieve_unit(redis_client, index_cache(redis_client), WordEmbedder(), "b-test", "u1")
    assert answer(redis_client, ScriptedEngine(model_file, finish_reason="time_limit")) == []

    class SoftLimit(Exception):
        """What a task runner raises at its soft time limit."""

    engine = ScriptedEngine(model_file, name="big", raises=SoftLimit())
    assert answer(redis_client, engine, model="big", over_time=(SoftLimit,)) == []
    for r in batch_store.results(redis_client, "b-test"):
        assert r["error"] == "generation exceeded the time limit of 600 s"
    assert set(outcomes(redis_client, "b-test").values()) == {"failed"}
    assert batch_store.answer(redis_client, "b-test", "u1", "small") is None  # nothing kept


def test_engine_that_cannot_load_or_fails_settles_the_pair_with_its_reason(redis_client,
                                                                           collection, model_file):
    make_batch(redis_client, collection)
    answering.retrieve_unit(redis_client, index_cache(redis_client), WordEmbedder(), "b-test", "u1")

    def unloadable():
        raise ModelUnavailable("model 'small': llama.cpp cannot load it")

    assert answering.answer_unit(redis_client, unloadable, "b-test", "u1", "small", 0.0, STAMP,
                                 budget_s=60, limit_s=600) == []
    assert answer(redis_client, ScriptedEngine(model_file, name="big",
                                               raises=RuntimeError("llama_decode returned -1")),
                  model="big") == []
    errors = {(r["question_id"], r["model"]): r["error"]
              for r in batch_store.results(redis_client, "b-test")}
    assert errors[("q1", "small")] == errors[("q2", "small")] == \
        "model 'small': llama.cpp cannot load it"
    assert errors[("q2", "big")] == "llama_decode returned -1"


def test_answer_for_another_model_is_refused(redis_client, collection, model_file):
    make_batch(redis_client, collection)
    answering.retrieve_unit(redis_client, index_cache(redis_client), WordEmbedder(), "b-test", "u1")
    engine = ScriptedEngine(model_file, name="small")
    assert answer(redis_client, engine, model="big") == []
    assert engine.requests == []
    (error,) = {r["error"] for r in batch_store.results(redis_client, "b-test")}
    assert error == "an answer for 'big' reached the pool of 'small'"


def test_retrieval_failure_settles_the_unit_for_every_model(redis_client, collection):
    make_batch(redis_client, collection + 5)  # a version that does not exist
    assert answering.retrieve_unit(redis_client, index_cache(redis_client), WordEmbedder(),
                                   "b-test", "u1") == []
    found = outcomes(redis_client, "b-test")
    assert found == {(q, m): "failed" for q in ("q1", "q2") for m in MODELS}
    assert all(r["error"].startswith("retrieval failed")
               for r in batch_store.results(redis_client, "b-test"))


def test_retrieval_that_cannot_reach_redis_records_nothing_and_hands_the_task_back(
        redis_client, collection):
    """Issue 14, defect 13: Redis out of reach is not the question's failure (the task goes
    back to its queue, workers/task_base), so nothing is recorded for it."""
    make_batch(redis_client, collection)

    class Partitioned:
        def get(self, *_):
            raise redis.exceptions.ConnectionError("Error 32 while writing to socket. Broken pipe.")

    with pytest.raises(redis.exceptions.ConnectionError):
        answering.retrieve_unit(redis_client, Partitioned(), WordEmbedder(), "b-test", "u1")
    assert batch_store.results(redis_client, "b-test") == []
    assert batch_store.get(redis_client, "b-test")["status"] == "running"


def test_scoring_failure_is_recorded_not_left_open(redis_client, collection, model_file):
    make_batch(redis_client, collection)
    answering.retrieve_unit(redis_client, index_cache(redis_client), WordEmbedder(), "b-test", "u1")
    answer(redis_client, ScriptedEngine(model_file))
    broken = WordEmbedder(fail=RuntimeError("embedder out of memory"))
    assert answering.score_result(redis_client, broken, "b-test", "q1", "u1", "small")
    (result,) = batch_store.results(redis_client, "b-test")
    assert result["error"] == "scoring failed: embedder out of memory"
    assert result["answer"] == "The deductible is $2,000."  # the answer is kept with it


def test_a_killed_answer_is_recorded_only_where_nothing_was_stored(redis_client, collection,
                                                                   model_file):
    make_batch(redis_client, collection)
    answering.retrieve_unit(redis_client, index_cache(redis_client), WordEmbedder(), "b-test", "u1")
    answer(redis_client, ScriptedEngine(model_file))
    answering.score_result(redis_client, WordEmbedder(), "b-test", "q1", "u1", "small")
    answering.record_failure(redis_client, "b-test", "u1", "small", "hard limit: killed")
    found = outcomes(redis_client, "b-test")
    assert found == {("q1", "small"): "completed", ("q2", "small"): "failed"}


def test_checks_from_the_questions_file_are_stored_and_summarised(redis_client, collection,
                                                                  model_file, tmp_path):
    """Issue 15: contains / regex / exact given in the questions file run on every answer (with
    or without a reference), are stored with it, and give the summary's pass rate and gate."""
    from shared.pipeline.questions import read_questions
    from shared.report import collect, gates

    path = tmp_path / "q.jsonl"
    path.write_text(
        '{"id": "q1", "question": "What is the deductible?", "reference": "It is $2,000.", '
        '"contains": ["DEDUCTIBLE", "2,000"], "regex": "\\\\$2,000"}\n'
        '{"id": "q2", "question": "What is the deductible?", "reference": "$2,000 a person.", '
        '"exact": "$2,000"}\n'
        '{"id": "q3", "question": "Are cleanings covered?", "contains": "deductible is"}\n'
        '{"id": "q4", "question": "Is dental covered?", "reference": "Twice a year."}\n')
    records = [q.to_json() for q in read_questions(path)]
    meta = {"collection": "plan", "version": collection, "models": ["small"],
            "params": {"top_k": 2, "bm25_weight": 0.3, "max_tokens": 32, "temperature": None}}
    units = {"u1": ["q1", "q2"], "u2": ["q3"], "u3": ["q4"]}
    batch_store.create(redis_client, "b-test", meta, records, units)
    embedder, engine = WordEmbedder(), ScriptedEngine(model_file)  # "The deductible is $2,000."
    for unit in units:
        answering.retrieve_unit(redis_client, index_cache(redis_client), embedder, "b-test", unit)
        for qid in answer(redis_client, engine, unit=unit):
            answering.score_result(redis_client, embedder, "b-test", qid, unit, "small")

    results = {r["question_id"]: r for r in batch_store.results(redis_client, "b-test")}
    assert results["q1"]["checks"] == {"contains": True, "regex": True}
    assert results["q1"]["checks_passed"] is True and results["q1"]["cosine"] is not None
    assert (results["q2"]["checks"], results["q2"]["checks_passed"]) == ({"exact": False}, False)
    assert results["q3"]["checks"] == {"contains": True} and results["q3"]["cosine"] is None
    assert (results["q4"]["checks"], results["q4"]["checks_passed"]) == (None, None)

    report = collect.build(redis_client, "b-test")
    (summary,) = report["summary"]
    assert summary["checked"] == 3 and summary["checks_pass_rate"] == pytest.approx(2 / 3)
    gates.check(report, [gates.parse("checks=0.6", False)])
    with pytest.raises(gates.GateFailed, match="small checks 0.667 < 0.7"):
        gates.check(report, [gates.parse("checks=0.7", False)])


def test_a_judge_grades_answers_apart_from_their_results(redis_client, collection, model_file):
    """Issue 15: `ragfleet judge` after the fact. What is sent (answered pairs with a reference,
    not graded yet), the grade parsed from the judge's reply or a failed judgement with the raw
    text, stored in its own hash labelled with the judge, the results untouched, the summary."""
    from shared.pipeline import judging
    from shared.report import collect
    from shared.state import judgements

    client, embedder = redis_client, WordEmbedder()
    make_batch(client, collection)
    with pytest.raises(UsageError, match="batch b-test is still queued: judge it when it is done"):
        judging.plan(client, "b-test", "judge")
    for unit in ("u1", "u2"):
        answering.retrieve_unit(client, index_cache(client), embedder, "b-test", unit)
        for model in MODELS:
            for qid in answer(client, ScriptedEngine(model_file, name=model), unit, model):
                answering.score_result(client, embedder, "b-test", qid, unit, model)
    before = {(r["question_id"], r["model"]): r for r in batch_store.results(client, "b-test")}

    todo, graded = judging.plan(client, "b-test", "judge")
    assert graded == 0  # q3 has no reference: nothing to grade it against
    assert todo == [("q1", "small"), ("q2", "small"), ("q1", "big"), ("q2", "big")]
    assert judging.plan(client, "b-test", "judge", ["big"])[0] == [("q1", "big"), ("q2", "big")]
    with pytest.raises(UsageError, match=r"model 'huge' is not in batch b-test \(its models: "
                                         r"small, big\)"):
        judging.plan(client, "b-test", "judge", ["small", "huge"])
    with pytest.raises(batch_store.UnknownBatch):
        judging.plan(client, "b-nope", "judge")

    graders = {"small": ScriptedEngine(model_file, name="judge", reply="Grade: 4/5"),
               "big": ScriptedEngine(model_file, name="judge", reply="An excellent answer!")}
    run = judging.new_run()
    for qid, model in todo:
        judging.judge_answer(client, lambda m=model: graders[m], "b-test", qid, model, "judge",
                             run, budget_s=60, limit_s=600)
    request = graders["small"].requests[0]
    assert (request.temperature, request.seed, request.max_tokens) == (0.0, 0, judging.MAX_TOKENS)
    assert "Reference answer: It is $2,000." in request.messages[-1].content
    assert judging.settled(client, "b-test", "judge", todo, run) == 4
    found = judgements.of_judge(client, "b-test", "judge")
    assert found[("q1", "small")]["grade"] == 4 and found[("q1", "small")]["error"] is None
    assert found[("q1", "big")]["grade"] is None
    assert found[("q1", "big")]["raw"] == "An excellent answer!"
    assert found[("q1", "big")]["error"] == "no grade 1-5 in the judge's reply"
    # a duplicate delivery of a graded pair changes nothing; the results were never touched
    assert judging.judge_answer(client, lambda: graders["small"], "b-test", "q1", "small",
                                "judge", "j-again", budget_s=60, limit_s=600) is None
    assert len(graders["small"].requests) == 2
    after = {(r["question_id"], r["model"]): r for r in batch_store.results(client, "b-test")}
    assert after == before
    # a second run sends only what has no grade; a pool of another model refuses
    assert judging.plan(client, "b-test", "judge") == ([("q1", "big"), ("q2", "big")], 2)
    wrong = ScriptedEngine(model_file, name="big", reply="5")
    judging.judge_answer(client, lambda: wrong, "b-test", "q1", "big", "judge", "j-2",
                         budget_s=60, limit_s=600)
    assert wrong.requests == []
    assert judgements.get(client, "b-test", "judge", "q1", "big")["error"] == \
        "a judgement by 'judge' reached the pool of 'big'"

    report = collect.build(client, "b-test")
    small, big = report["summary"]
    assert small["judges"] == [{"judge_model": "judge", "judge_mean": 4.0, "judged": 2,
                                "failed": 0}]
    assert big["judges"] == [{"judge_model": "judge", "judge_mean": None, "judged": 0,
                              "failed": 2}]
    row = next(r for r in report["results"] if (r["question_id"], r["model"]) == ("q2", "small"))
    assert row["judgements"] == {"judge": {"grade": 4, "raw": "Grade: 4/5", "error": None}}
    assert row["cosine"] == before[("q2", "small")]["cosine"]
    assert judging.summary(client, "b-test", "judge")[0] == \
        {"model": "small", "judge_model": "judge", "judged": 2, "failed": 0, "judge_mean": 4.0}
    assert judgements.delete(client, "b-test") == 2  # the judge's hash and the judges set
    assert judgements.judge_models(client, "b-test") == []


# -- ingestion jobs ---------------------------------------------------------------------------

def make_job(client, data: bytes, name: str = "plan.pdf") -> str:
    job_id = jobs.new_id()
    uploads.save(client, job_id, {0: data}, ttl_s=600)
    jobs.create(client, job_id, "docs", [{"name": name, "bytes": len(data)}],
                {"chunk_size": None, "chunk_overlap": None, "max_bytes": None})
    return job_id


def test_an_ingestion_that_lost_its_lock_builds_again_on_the_newer_version(redis_client):
    """Defect 6: two ingestions into one collection at once (a lost lock). The one that saves
    second finds its base replaced and builds again on the newer version: no document lost."""
    from shared.pipeline.ingestion import SourceDocument, ingest

    embedder = WordEmbedder()
    ingest(redis_client, "docs", [SourceDocument("base.pdf", first_pages_pdf(1))], None, None,
           embedder, (1000, 150))
    interleaved = []

    def other_ingestion_meanwhile(stage, done, total):
        if stage == "embed" and not interleaved:
            interleaved.append(ingest(redis_client, "docs",
                                      [SourceDocument("other.pdf", first_pages_pdf(2))],
                                      None, None, embedder, (1000, 150)))

    report = ingest(redis_client, "docs", [SourceDocument("mine.pdf", first_pages_pdf(3))],
                    None, None, embedder, (1000, 150), progress=other_ingestion_meanwhile)
    assert interleaved[0].version == 2 and report.version == 4  # v3 was refused, then rebuilt
    meta = collection_store.manifest(redis_client, "docs")
    assert meta.version == 4
    assert sorted(d["name"] for d in meta.documents) == ["base.pdf", "mine.pdf", "other.pdf"]


def test_ingestion_job_runs_once_and_discards_its_upload(redis_client, tmp_path):
    settings = Settings(data_dir=tmp_path)
    job_id = make_job(redis_client, first_pages_pdf(3))
    job = ingest_job.run(redis_client, job_id, WordEmbedder(), settings)
    assert job["state"] == jobs.DONE and job["result"]["version"] >= 1
    assert uploads.load(redis_client, job_id, 0) is None
    embedder = WordEmbedder()
    again = ingest_job.run(redis_client, job_id, embedder, settings)  # a redelivery
    assert again == job and embedder.calls == 0
    assert collection_store.current_version(redis_client, "docs") == job["result"]["version"]


def test_ingestion_job_fails_with_the_reason_and_keeps_the_version(redis_client, tmp_path):
    settings = Settings(data_dir=tmp_path)
    good = ingest_job.run(redis_client, make_job(redis_client, first_pages_pdf(2)),
                          WordEmbedder(), settings)
    version = good["result"]["version"]

    broken = make_job(redis_client, truncated_pdf(), "broken.pdf")
    bad = ingest_job.run(redis_client, broken, WordEmbedder(), settings)
    assert bad["state"] == jobs.FAILED and bad["error_code"] == 2
    assert "broken.pdf" in bad["error"]
    assert uploads.load(redis_client, broken, 0) is None  # not kept for days after failing

    class SoftLimit(Exception):
        pass

    slow = ingest_job.run(redis_client, make_job(redis_client, first_pages_pdf(4), "more.pdf"),
                          WordEmbedder(fail=SoftLimit()), settings, over_time=(SoftLimit,))
    assert slow["state"] == jobs.FAILED and "exceeded the time limit" in slow["error"]

    buggy = ingest_job.run(redis_client, make_job(redis_client, first_pages_pdf(4), "more.pdf"),
                           WordEmbedder(fail=KeyError("x")), settings)
    assert buggy["state"] == jobs.FAILED and buggy["error"].startswith("ingestion failed: KeyError")
    killed = make_job(redis_client, first_pages_pdf(4), "more.pdf")  # its hard limit killed it
    ingest_job.fail_unfinished(redis_client, killed, "ingestion exceeded the time limit")
    assert jobs.get(redis_client, killed)["state"] == jobs.FAILED
    assert uploads.load(redis_client, killed, 0) is None

    expired = make_job(redis_client, first_pages_pdf(4), "more.pdf")
    uploads.discard(redis_client, expired, 1)
    gone = ingest_job.run(redis_client, expired, WordEmbedder(), settings)
    assert gone["state"] == jobs.FAILED and "expired" in gone["error"]
    assert collection_store.current_version(redis_client, "docs") == version


def test_a_killed_ingestion_fails_its_job_unless_it_ended(redis_client, tmp_path):
    running = make_job(redis_client, first_pages_pdf(1))
    jobs.update(redis_client, running, state=jobs.RUNNING)
    ingest_job.fail_unfinished(redis_client, running, "ingestion failed: killed")
    assert jobs.get(redis_client, running)["state"] == jobs.FAILED
    done = ingest_job.run(redis_client, make_job(redis_client, first_pages_pdf(1)),
                          WordEmbedder(), Settings(data_dir=tmp_path))
    ingest_job.fail_unfinished(redis_client, done["id"], "ingestion failed: killed")
    assert jobs.get(redis_client, done["id"])["state"] == jobs.DONE


def test_an_error_without_a_message_is_still_a_failure(redis_client, collection, model_file):
    """str(MemoryError()) is empty: the stored reason names the exception instead, and the
    report counts the pair as failed."""
    from shared.report.stats import model_summary

    make_batch(redis_client, collection)
    answering.retrieve_unit(redis_client, index_cache(redis_client), WordEmbedder(), "b-test", "u1")
    answer(redis_client, ScriptedEngine(model_file, raises=MemoryError()))
    results = batch_store.results(redis_client, "b-test")
    assert {r["error"] for r in results} == {"MemoryError"}
    summary = model_summary("small", results)
    assert (summary["answered"], summary["failed"]) == (0, 2)
    assert model_summary("small", [{**results[0], "error": ""}])["failed"] == 1  # older records


def test_the_embedder_waits_while_a_pool_of_this_host_generates_within_its_pause_budget(
        redis_client):
    import os
    import socket

    from shared.state import registry

    host, cores = socket.gethostname(), os.cpu_count() or 1
    slept = []
    threads = PoolsFirst(redis_client, max_pause_s=1.0, sleep=slept.append)
    assert threads() == cores and slept == []
    with registry.generating(redis_client, "another-host", "task-2", ttl_s=60):
        assert threads() == cores  # another machine's pools have their own cores
    with registry.generating(redis_client, host, "task-1", ttl_s=60):
        assert threads() == 1  # waited its whole budget, then goes on with one core
        assert sum(slept) == pytest.approx(1.0)
        assert threads() == 1 and sum(slept) == pytest.approx(1.0)  # the budget is spent

    def generation_ends(seconds):  # the pool finishes while the embedder waits
        slept.append(seconds)
        redis_client.delete(keys.generating_key(host))

    threads = PoolsFirst(redis_client, max_pause_s=60, sleep=generation_ends)
    slept.clear()
    with registry.generating(redis_client, host, "task-3", ttl_s=60):
        assert threads() == cores and slept == [core_sharing.PAUSE_STEP_S]


def test_containers_of_one_machine_share_its_generating_marks(redis_client, monkeypatch):
    import socket

    from shared.config import get_settings
    from shared.state import registry

    monkeypatch.setenv("RAGFLEET_MACHINE", "compose-host")
    get_settings.cache_clear()
    try:
        assert registry.this_machine() == "compose-host"
        threads = PoolsFirst(redis_client, max_pause_s=0.0, sleep=lambda s: None)
        with registry.generating(redis_client, socket.gethostname(), "own-container", ttl_s=60):
            assert threads() == (os.cpu_count() or 1)  # the host name is not the machine now
        with registry.generating(redis_client, "compose-host", "pool-container", ttl_s=60):
            assert threads() == 1  # a pool in another container of this machine generates
    finally:
        get_settings.cache_clear()
