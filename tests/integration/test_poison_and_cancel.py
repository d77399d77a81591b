"""Poison messages and cancelled ingestion jobs, decided in shared.pipeline, against a real Redis
(issue 14, defect 4): a task whose worker died max_deliveries times is settled as failed instead
of run again; `ragfleet jobs cancel` ends a queued or running ingestion job."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import redis

from shared.config import Settings
from shared.pipeline import answering, ingest_job, poison
from shared.state import batch_store, collection_store, deliveries, jobs, keys, uploads
from tests.helpers import ROOT, clean_env, ragfleet, wait_for
from tests.pdf_samples import first_pages_pdf

pytestmark = pytest.mark.integration


@pytest.fixture()
def client(redis_url) -> redis.Redis:
    """Bytes in, bytes out, as the workers' client."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.flushdb()  # no task message left for another test's workers


# -- the decision -----------------------------------------------------------------------------

def test_a_task_runs_until_its_worker_died_max_deliveries_times(client):
    for _ in range(3):
        assert poison.admit(client, "task-1", max_deliveries=3) is None
    assert 0 < client.ttl(keys.deliveries_key("task-1")) <= deliveries.TTL_S
    reason = poison.admit(client, "task-1", max_deliveries=3)  # three deliveries died
    assert reason == "the worker died 3 times running this task (killed or crashed: out of memory?)"
    assert poison.admit(client, "task-2", max_deliveries=1) is None
    assert "died once" in poison.admit(client, "task-2", max_deliveries=1)


def test_a_task_that_returns_forgets_its_count(client):
    for _ in range(5):  # five deliveries that each returned: none of them died
        assert poison.admit(client, "task-ok", max_deliveries=3) is None
        poison.returned(client, "task-ok")
    assert deliveries.started(client, "task-ok") == 0


# -- settling a poisoned task's work -----------------------------------------------------------

def make_batch(client) -> None:
    questions = [{"id": "q1", "question": "What is the deductible?", "reference": "$2,000."},
                 {"id": "q2", "question": "Is dental covered?", "reference": "Twice a year."},
                 {"id": "q3", "question": "What is a copay?", "reference": "A fixed fee."}]
    batch_store.create(client, "b-poison", {
        "collection": "plan", "version": 1, "models": ["small", "big"],
        "params": {"top_k": 1, "bm25_weight": 0.3}}, questions,
        {"u1": ["q1"], "u2": ["q2"], "u3": ["q3"]})
    for unit in ("u1", "u2", "u3"):
        batch_store.save_contexts(client, "b-poison", unit, {"contexts": [], "retrieval_s": 0.0})
    batch_store.save_answer(client, "b-poison", "u3", "small", {"answer": "A fee."})


def test_a_poisoned_answer_retrieval_or_scoring_fails_its_pairs_with_the_cause(client):
    make_batch(client)
    cause = poison.died_reason(3)
    answering.record_failure(client, "b-poison", "u1", "small", cause)  # an answer task
    answering.record_retrieval_failure(client, "b-poison", "u2", None, cause)  # every model
    answering.record_scoring_failure(client, "b-poison", "q3", "u3", "small", cause)
    by_pair = {(r["question_id"], r["model"]): r for r in batch_store.results(client, "b-poison")}
    assert by_pair[("q1", "small")]["error"] == cause
    assert by_pair[("q2", "small")]["error"] == by_pair[("q2", "big")]["error"] == (
        f"retrieval failed: {cause}")
    assert by_pair[("q3", "small")]["error"] == f"scoring failed: {cause}"
    assert by_pair[("q3", "small")]["answer"] == "A fee."  # the answer is kept with it
    assert set(by_pair) == {("q1", "small"), ("q2", "small"), ("q2", "big"), ("q3", "small")}
    # a pair settled already is not settled twice
    answering.record_scoring_failure(client, "b-poison", "q3", "u3", "small", "again")
    assert batch_store.get(client, "b-poison")["failed"] == 4


# -- ingestion jobs: poisoned, cancelled --------------------------------------------------------

class Embedder:
    """Small deterministic vectors; optionally cancels the job in the middle of embedding."""

    name, dim = "zeros-8", 8

    def __init__(self, cancel: tuple[redis.Redis, str] | None = None):
        self.cancel, self.calls = cancel, 0

    def embed(self, texts, progress=None, **_):
        self.calls += 1
        if self.cancel:
            ingest_job.cancel(*self.cancel)  # the user, while the worker embeds
        if progress:
            progress(len(texts) // 2, len(texts))
        vectors = np.ones((len(texts), self.dim), dtype=np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def make_job(client, pages: int = 2) -> str:
    job_id = jobs.new_id()
    data = first_pages_pdf(pages)
    uploads.save(client, job_id, {0: data}, ttl_s=600)
    jobs.create(client, job_id, "docs", [{"name": "plan.pdf", "bytes": len(data)}],
                {"chunk_size": None, "chunk_overlap": None, "max_bytes": None})
    return job_id


def test_a_poisoned_ingestion_fails_its_job_with_the_cause(client):
    job_id = make_job(client)
    jobs.update(client, job_id, state=jobs.RUNNING)
    ingest_job.fail_unfinished(client, job_id, f"ingestion failed: {poison.died_reason(3)}")
    job = jobs.get(client, job_id)
    assert job["state"] == jobs.FAILED and "died 3 times" in job["error"]


def test_a_cancelled_queued_job_is_skipped_by_the_worker_that_picks_it_up(client, tmp_path):
    job_id = make_job(client)
    job = ingest_job.cancel(client, job_id)
    assert (job["state"], job["error"], job["cancelled"]) == (
        jobs.FAILED, "cancelled by the user", True)
    assert uploads.load(client, job_id, 0) is None  # its bytes are not kept
    embedder = Embedder()
    assert ingest_job.run(client, job_id, embedder, Settings(data_dir=tmp_path)) == job
    assert embedder.calls == 0
    assert collection_store.current_version(client, "docs") is None


def test_a_job_cancelled_while_it_runs_stops_without_storing_a_version(client, tmp_path):
    job_id = make_job(client)
    embedder = Embedder(cancel=(client, job_id))
    job = ingest_job.run(client, job_id, embedder, Settings(data_dir=tmp_path))
    assert embedder.calls == 1
    assert (job["state"], job["error"]) == (jobs.FAILED, "cancelled by the user")
    assert collection_store.current_version(client, "docs") is None
    assert client.get(keys.collection_lock("docs")) is None  # the lock went with it


def test_cancelling_a_finished_job_changes_nothing(client, tmp_path):
    done = ingest_job.run(client, make_job(client), Embedder(), Settings(data_dir=tmp_path))
    assert done["state"] == jobs.DONE
    assert ingest_job.cancel(client, done["id"]) == done


def test_jobs_cancel_returns_a_waiting_ingest(client, redis_url, tmp_path):
    """No cpu worker runs: the job stays queued until the user cancels it."""
    env = clean_env(REDIS_URL=redis_url, RAGFLEET_DATA_DIR=str(tmp_path / "data"))
    pdf = tmp_path / "plan.pdf"
    pdf.write_bytes(first_pages_pdf(1))
    waiting = subprocess.Popen(
        [sys.executable, "-m", "producer.cli", "ingest", str(pdf), "-c", "docs", "--wait"],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        (job,) = wait_for(lambda: jobs.recent(client), 60, what="the job queued")
        cancelled = ragfleet("jobs", "cancel", job["id"], env=env, timeout=60)
        assert cancelled.returncode == 0, cancelled.stderr
        assert cancelled.stdout.strip() == f"job {job['id']}: failed (cancelled by the user)"
        _, stderr = waiting.communicate(timeout=30)
        assert waiting.returncode == 1
        assert stderr.strip() == "error: cancelled by the user"
    finally:
        if waiting.poll() is None:
            waiting.kill()
    shown = ragfleet("jobs", job["id"], "--json", env=env, timeout=60)
    assert json.loads(shown.stdout)["error"] == "cancelled by the user"
    listed = ragfleet("jobs", "--json", env=env, timeout=60)
    assert [j["id"] for j in json.loads(listed.stdout)["jobs"]] == [job["id"]]
    again = ragfleet("jobs", "cancel", job["id"], env=env, timeout=60)
    assert again.returncode == 0 and "failed" in again.stdout
