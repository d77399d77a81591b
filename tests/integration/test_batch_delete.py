"""`ragfleet batches delete BATCH`: a finished batch's keys go, all of them and only them; a
batch still in progress is refused in one line (exit 2)."""

from __future__ import annotations

import json

import pytest
import redis

from shared.errors import UsageError
from shared.state import batch_store, judgements, keys
from tests.helpers import assert_one_line_error, clean_env, ragfleet

pytestmark = pytest.mark.integration

QUESTIONS = [{"id": "q1", "question": "One?", "reference": "1"},
             {"id": "q2", "question": "Two?", "reference": "2"}]


@pytest.fixture()
def client(redis_url) -> redis.Redis:
    conn = redis.Redis.from_url(redis_url, decode_responses=True)
    conn.flushdb()
    return conn


def make_batch(client, batch_id: str, settle: bool) -> None:
    """A batch with a stored context, answer and result for each question; settle=False leaves
    one question open (the batch is still running)."""
    batch_store.create(client, batch_id, {"collection": "docs", "version": 1, "models": ["m"],
                                          "params": {}},
                       QUESTIONS, {q["question"]: [q["id"]] for q in QUESTIONS})
    for question in QUESTIONS[: None if settle else 1]:
        unit = question["question"]
        batch_store.mark_sent(client, batch_id, unit)
        batch_store.save_contexts(client, batch_id, unit, {"hits": []})
        batch_store.save_answer(client, batch_id, unit, "m", {"answer": "x"})
        batch_store.record(client, batch_id, question["id"], "m",
                           batch_store.result_record(question, "m", unit, {"answer": "x"}, 1.0),
                           "completed")


def batch_keys(client, batch_id: str) -> list[str]:
    return sorted(client.scan_iter(f"{keys.batch_key(batch_id)}*"))


def test_delete_removes_every_key_of_a_finished_batch_and_nothing_else(client):
    make_batch(client, "b-done", settle=True)
    make_batch(client, "b-other", settle=True)
    assert batch_store.status(client, "b-done") == batch_store.COMPLETED
    assert len(batch_keys(client, "b-done")) >= 5
    assert batch_store.delete(client, "b-done") == batch_store.COMPLETED
    assert batch_keys(client, "b-done") == []
    assert [b["id"] for b in batch_store.list_batches(client)] == ["b-other"]
    assert len(batch_store.results(client, "b-other")) == 2  # another batch is untouched
    with pytest.raises(batch_store.UnknownBatch):
        batch_store.delete(client, "b-done")


def test_a_batch_in_progress_is_refused_and_kept(client):
    make_batch(client, "b-running", settle=False)
    before = batch_keys(client, "b-running")
    for state in (batch_store.RUNNING, batch_store.QUEUED, batch_store.CANCELLING):
        client.hset(keys.batch_key("b-running"), "status", state)
        with pytest.raises(UsageError, match=f"still {state}"):
            batch_store.delete(client, "b-running")
        assert batch_keys(client, "b-running") == before
    client.hset(keys.batch_key("b-running"), "status", batch_store.RUNNING)
    assert batch_store.cancel(client, "b-running") == batch_store.CANCELLED
    assert batch_store.delete(client, "b-running") == batch_store.CANCELLED
    assert batch_keys(client, "b-running") == []


def test_batches_delete_command(client, redis_url, tmp_path):
    make_batch(client, "b-done", settle=True)
    make_batch(client, "b-running", settle=False)
    # `ragfleet judge`'s grades are kept apart from the results: they go with the batch too
    judgements.save(client, "b-done", "judge", {"question_id": "q1", "model": "m", "grade": 4})
    assert len(batch_keys(client, "b-done")) >= 7
    env = clean_env(REDIS_URL=redis_url, RAGFLEET_DATA_DIR=str(tmp_path))
    deleted = ragfleet("batches", "delete", "b-done", "--json", env=env, timeout=120)
    assert deleted.returncode == 0, deleted.stderr
    assert json.loads(deleted.stdout) == {"deleted": "b-done", "status": "completed"}
    assert batch_keys(client, "b-done") == []
    assert_one_line_error(ragfleet("batches", "delete", "b-running", env=env, timeout=120), 2,
                          "b-running is still running")
    assert_one_line_error(ragfleet("batches", "delete", "b-done", env=env, timeout=120), 2,
                          "unknown batch")
    listing = ragfleet("batches", "--json", env=env, timeout=120)
    assert listing.returncode == 0, listing.stderr
    assert [b["id"] for b in json.loads(listing.stdout)["batches"]] == ["b-running"]
