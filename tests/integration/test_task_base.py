"""The tasks' base (workers/task_base) against a real Redis, in this process: a task that
cannot reach Redis is handed back to its queue, never settled as failed (issue 14, defect 13)."""

from __future__ import annotations

import pytest
import redis
from celery.exceptions import Reject

from broker.app import app, configure
from shared.config import Settings
from shared.state import batch_store, deliveries
from workers import llm_tasks, resources

pytestmark = pytest.mark.integration


@pytest.fixture()
def worker_app(redis_url, redis_client, monkeypatch):
    """The workers' app pointed at the session Redis, as `ragfleet worker` points it."""
    monkeypatch.setattr(app.conf, "broker_url", app.conf.broker_url)  # put back afterwards
    configure(redis_url, Settings(redis_url=redis_url))
    resources.store.cache_clear()
    yield redis_client
    resources.store.cache_clear()


def test_an_answer_that_cannot_reach_redis_goes_back_to_its_queue_unfailed(worker_app,
                                                                           monkeypatch):
    def partitioned(*args, **kwargs):  # the store met a cut link after the patient retries
        raise redis.exceptions.ConnectionError("Error 32 while writing to socket. Broken pipe.")

    monkeypatch.setattr(llm_tasks.answer, "run", partitioned)
    llm_tasks.answer.push_request(id="t-partitioned", args=["b-cut", "u1", "small", 0.0])
    try:
        with pytest.raises(Reject) as handed_back:
            llm_tasks.answer("b-cut", "u1", "small", 0.0)
    finally:
        llm_tasks.answer.pop_request()
    assert handed_back.value.requeue  # to run again, not acknowledged as done
    assert "Redis out of reach: Error 32" in str(handed_back.value.reason)
    assert deliveries.started(worker_app, "t-partitioned") == 1  # counted like any start
    assert batch_store.results(worker_app, "b-cut") == []  # no failure recorded
