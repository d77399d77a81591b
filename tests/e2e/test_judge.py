"""`ragfleet judge` through the real CLI: a real SmolLM2 pool (a `ragfleet worker` process) grades
the answers of a small finished batch; `ragfleet results` shows the judge's mean beside the
untouched cosine results. The batch is written straight to Redis (three answered questions), so
the test needs no ingestion and no answering: it runs in well under a minute."""

from __future__ import annotations

import json

import pytest

from broker import connection
from broker.queues import llm_queue
from shared.state import batch_store, judgements
from shared.state.registry import live_workers
from tests.conftest import stop_process
from tests.helpers import assert_one_line_error, clean_env, ragfleet, start_worker, wait_for

pytestmark = pytest.mark.e2e

JUDGE = "smollm2-135m"
QUESTIONS = [
    ("q1", "What is the capital of France?", "Paris is the capital of France.",
     "The capital of France is Paris."),
    ("q2", "How many days are in a week?", "A week has seven days.", "A week has 7 days."),
    ("q3", "What colour is the sky on a clear day?", "The sky is blue.", "Bananas are yellow."),
]


@pytest.fixture(scope="module")
def judge_pool(redis_url, tmp_path_factory):
    """A smollm2-135m pool; the CLI's environment; a client that does not flush Redis."""
    logs = tmp_path_factory.mktemp("judge-logs")
    env = clean_env(REDIS_URL=redis_url, RAGFLEET_DATA_DIR=str(logs))
    proc = start_worker(["--model", JUDGE, "--threads", "2"], env, logs / "judge.log")
    client = connection.client(redis_url)
    try:
        wait_for(lambda: any(w["state"] == "ready" for w in live_workers(client)
                             if llm_queue(JUDGE) in w["queues"]),
                 timeout=180, what="the judge's pool ready")
        yield env, client
    finally:
        stop_process(proc)


def finished_batch(client, batch_id: str, models=("tiny", "other")) -> None:
    """A completed batch as the pipeline leaves it: every question answered by `tiny` (with a
    cosine), and failed for `other`."""
    records = [{"id": qid, "question": q, "reference": ref, "sources": []}
               for qid, q, ref, _ in QUESTIONS]
    batch_store.create(client, batch_id, {"collection": "facts", "version": 1,
                                          "models": list(models), "params": {}, "questions": 3},
                       records, {f"u{i}": [r["id"]] for i, r in enumerate(records)})
    for i, (record, (_, _, _, text)) in enumerate(zip(records, QUESTIONS)):
        answer = {"answer": text, "response_s": 0.1, "ttft_s": 0.01, "generation_s": 0.09,
                  "completion_tokens": 8}
        batch_store.record(client, batch_id, record["id"], models[0], batch_store.result_record(
            record, models[0], f"u{i}", answer=answer, cosine=0.5 + i / 10), "completed")
        batch_store.record(client, batch_id, record["id"], models[1], batch_store.result_record(
            record, models[1], f"u{i}", error="llama_decode returned -1"), "failed")


def test_judge_grades_each_answer_and_results_show_its_mean(judge_pool):
    env, client = judge_pool
    finished_batch(client, "b-judge-1")
    before = stored_results(client)
    out = ragfleet("judge", "b-judge-1", "--model", JUDGE, "--wait", "--timeout", "120",
                   "--json", env=env, timeout=180)
    assert out.returncode == 0, out.stderr
    done = json.loads(out.stdout)
    assert (done["judge_model"], done["sent"], done["graded_before"]) == (JUDGE, 3, 0)
    (row,) = done["summary"]  # `other` failed every answer: nothing of it to judge
    assert row["model"] == "tiny" and row["judged"] + row["failed"] == 3
    found = judgements.of_judge(client, "b-judge-1", JUDGE)
    assert set(found) == {(qid, "tiny") for qid, *_ in QUESTIONS}
    for j in found.values():
        assert j["raw"] is not None and j["judge_model"] == JUDGE and j["run"] == done["run"]
        assert (j["grade"] in range(1, 6)) if j["error"] is None else j["grade"] is None
    assert stored_results(client) == before  # the cosine results untouched

    report = json.loads(ragfleet("results", "b-judge-1", "--format", "json", env=env,
                                 timeout=120).stdout)
    tiny = next(s for s in report["summary"] if s["model"] == "tiny")
    (judge,) = tiny["judges"]
    graded = [j["grade"] for j in found.values() if j["grade"] is not None]
    assert judge["judge_model"] == JUDGE and judge["judged"] == len(graded)
    assert judge["judge_mean"] == (pytest.approx(sum(graded) / len(graded)) if graded else None)
    assert all(r["judgements"][JUDGE]["raw"] for r in report["results"] if r["model"] == "tiny")
    table = ragfleet("results", "b-judge-1", env=env, timeout=120).stdout
    assert "JUDGE" in table and f"by {JUDGE}" in table

    # greedy and deterministic: judged again, a graded answer is not sent again, and a failed
    # judgement gets the same reply
    again = json.loads(ragfleet("judge", "b-judge-1", "-m", JUDGE, "--wait", "--json", env=env,
                                timeout=180).stdout)
    assert (again["sent"], again["graded_before"]) == (3 - len(graded), len(graded))
    assert {k: j["raw"] for k, j in judgements.of_judge(client, "b-judge-1", JUDGE).items()} == \
        {k: j["raw"] for k, j in found.items()}


def test_bad_judge_input_is_one_line_and_a_usage_error(judge_pool):
    env, client = judge_pool
    finished_batch(client, "b-judge-2")
    assert_one_line_error(ragfleet("judge", "b-nope", "-m", JUDGE, env=env, timeout=60), 2,
                          "unknown batch 'b-nope'")
    assert_one_line_error(ragfleet("judge", "b-judge-2", "-m", JUDGE, "--models", "tiny,huge",
                                   env=env, timeout=60),
                          2, "model 'huge' is not in batch b-judge-2 (its models: tiny, other)")
    assert_one_line_error(ragfleet("judge", "b-judge-2", "-m", "gemma3-270m", env=env,
                                   timeout=60), 2, "no running pool for gemma3-270m")
    assert_one_line_error(ragfleet("judge", "b-judge-2", "-m", "nonesuch", env=env, timeout=60),
                          2, "unknown model 'nonesuch'")
    assert_one_line_error(ragfleet("judge", "b-judge-2", "-m", JUDGE, "--models", "other",
                                   env=env, timeout=60),
                          2, "batch b-judge-2 has no answer with a reference to judge for other")
    assert judgements.judge_models(client, "b-judge-2") == []  # nothing was sent


def stored_results(client) -> list[dict]:
    """The batch's results in a fixed order: HGETALL's order is a hash table's, which Redis
    may rehash between two reads."""
    return sorted(batch_store.results(client, "b-judge-1"),
                  key=lambda r: (r["question_id"], r["model"]))
