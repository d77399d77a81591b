"""Real worker processes against a real Redis: the cpu pool and a model pool."""

from __future__ import annotations

import pytest

from broker import connection
from broker.app import sender
from broker.queues import GENERATE_TASK, PING_TASK, llm_queue
from shared.config import Settings
from tests.conftest import stop_process
from tests.helpers import clean_env, start_worker, wait_for
from workers.registry import live_workers

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


def test_prompt_through_the_model_queue_gets_real_text(pools):
    app, _, _ = pools
    request = {
        "model": "smollm2-135m",
        "messages": [
            {"role": "system", "content": "Answer in one short sentence."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
        "max_tokens": 24,
        "temperature": 0.0,
    }
    first = app.send_task(GENERATE_TASK, args=[request], queue=llm_queue("smollm2-135m"))
    result = first.get(timeout=120)
    assert "paris" in result["text"].lower(), result["text"]
    assert 0 < result["completion_tokens"] <= 24 + 1
    assert result["prompt_tokens"] > 10
    assert 0 < result["ttft_s"] <= result["total_s"]
    assert result["model_file"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
    # the model is loaded once per pool process: a second request finds it loaded and answers
    # the same text at temperature 0
    again = app.send_task(GENERATE_TASK, args=[request], queue=llm_queue("smollm2-135m"))
    assert again.get(timeout=120)["text"] == result["text"]


def test_request_for_another_model_is_refused_by_the_pool(pools):
    app, _, _ = pools
    request = {"model": "gemma3-270m", "messages": [{"role": "user", "content": "hi"}]}
    wrong = app.send_task(GENERATE_TASK, args=[request], queue=llm_queue("smollm2-135m"))
    with pytest.raises(Exception, match="reached the pool of 'smollm2-135m'"):
        wrong.get(timeout=120)


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
