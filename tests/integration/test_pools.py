"""Real worker processes against a real Redis: the cpu pool and a model pool."""

from __future__ import annotations

import time

import pytest

from broker import connection
from broker.app import sender
from broker.queues import ANSWER_TASK, PING_TASK, llm_queue
from shared.config import Settings
from shared.state import batch_store
from shared.state.registry import live_workers
from tests.conftest import stop_process
from tests.helpers import clean_env, start_worker, wait_for

pytestmark = pytest.mark.integration


def _ready(client, queue: str):
    workers = [w for w in live_workers(client) if queue in w["queues"]]
    return workers if workers and all(w["state"] == "ready" for w in workers) else None


@pytest.fixture(scope="module")
def pools(redis_settings, redis_url, tmp_path_factory):
    """One cpu worker and one smollm2-135m pool, started as `ragfleet worker` processes."""
    logs = tmp_path_factory.mktemp("pool-logs")
    env = clean_env(REDIS_URL=redis_url, RAGFLEET_DATA_DIR=str(logs))
    procs = [
        start_worker(["--cpu"], env, logs / "cpu.log"),
        start_worker(["--model", "smollm2-135m", "--threads", "2"], env, logs / "smollm2.log"),
    ]
    client = connection.client(redis_url)
    try:
        for queue in ("cpu", llm_queue("smollm2-135m")):
            wait_for(lambda q=queue: _ready(client, q), timeout=180, what=f"{queue} pool ready")
        yield sender(redis_url, Settings(redis_url=redis_url)), client, procs
    finally:
        for proc in procs:
            stop_process(proc)


def test_cpu_queue_round_trip(pools):
    app, _, procs = pools
    answer = app.send_task(PING_TASK).get(timeout=60)
    assert answer["worker"].startswith("cpu-")
    assert answer["pid"] != procs[0].pid  # a prefork pool process did the work


def test_registry_describes_the_model_pool(pools):
    _, client, procs = pools
    (entry,) = [w for w in live_workers(client) if w["model"] == "smollm2-135m"]
    assert entry["queues"] == ["llm.smollm2-135m"]
    assert entry["pid"] == procs[1].pid
    assert entry["backend"] == "cpu"  # this machine's llama-cpp-python build has no GPU
    assert entry["model_file"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert entry["model_size"] > 90_000_000
    assert entry["n_threads"] == 2


def _answer_through_the_pool(app, client, batch_id: str, model: str) -> dict:
    """A one-question batch made directly in Redis (its context stored, no retrieval), its
    answer task sent to smollm2-135m's queue; returns the stored result."""
    batch_store.create(client, batch_id, {
        "collection": "facts", "version": 1, "models": [model],
        "params": {"top_k": 4, "bm25_weight": 0.3, "max_tokens": 24, "temperature": 0.0},
    }, [{"id": "q1", "question": "What is the capital of France?", "reference": None}],
        {"u1": ["q1"]})
    batch_store.save_contexts(client, batch_id, "u1", {"contexts": [
        {"chunk": 0, "score": 1.0, "document": "facts.pdf", "page": 1,
         "text": "Paris is the capital and largest city of France."}], "retrieval_s": 0.0})
    app.send_task(ANSWER_TASK, args=[batch_id, "u1", model, time.time()],
                  queue=llm_queue("smollm2-135m"))
    wait_for(lambda: batch_store.get(client, batch_id)["status"] in batch_store.FINISHED,
             timeout=120, what=f"batch {batch_id} finished")
    (result,) = batch_store.results(client, batch_id)
    return result


def test_question_through_the_model_queue_gets_real_text(pools):
    app, client, _ = pools
    result = _answer_through_the_pool(app, client, "b-pool-1", "smollm2-135m")
    assert result["error"] is None
    assert "paris" in result["answer"].lower(), result["answer"]
    assert 0 < result["completion_tokens"] <= 24 + 1
    assert result["prompt_tokens"] > 10
    assert 0 < result["ttft_s"] <= result["response_s"]
    assert result["model_file"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert result["cosine"] is None  # no reference: stored unscored
    # the model is loaded once per pool process: a second batch finds it loaded and gets the
    # same text at temperature 0
    again = _answer_through_the_pool(app, client, "b-pool-2", "smollm2-135m")
    assert again["answer"] == result["answer"]


def test_answer_for_another_model_is_refused_by_the_pool(pools):
    app, client, _ = pools
    result = _answer_through_the_pool(app, client, "b-pool-3", "gemma3-270m")
    assert "reached the pool of 'smollm2-135m'" in result["error"]
    assert batch_store.get(client, "b-pool-3")["status"] == "failed"


class _Exploit:
    """Unpickling this runs a shell command: what a pickle-accepting worker would execute."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_pickled_message_is_refused_and_not_executed(pools, redis_url, tmp_path):
    from kombu import Connection

    app, client, procs = pools
    marker = tmp_path / "pwned"
    with Connection(redis_url) as conn:
        conn.Producer().publish(
            ((_Exploit(marker),), {}, {}), exchange="cpu", routing_key="cpu", serializer="pickle",
            headers={"lang": "py", "task": "ragfleet.cpu.ping", "id": "pickled-1",
                     "argsrepr": "", "kwargsrepr": ""},
            declare=[],
        )
    wait_for(lambda: client.llen("cpu") == 0, 30, what="the message taken off the queue")
    # the worker is alive, answers JSON tasks, and never unpickled the payload
    assert app.send_task(PING_TASK).get(timeout=60)["worker"].startswith("cpu-")
    assert not marker.exists()
    assert procs[0].poll() is None
