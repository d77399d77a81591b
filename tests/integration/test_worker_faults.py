"""Real model pools against the session's real Redis: a task that kills its pool process every
time is failed after max_deliveries instead of looping (issue 14, defect 4); `ragfleet down`
lets a pool finish the answer it is generating (defect 12); a worker whose limits differ from
the fleet's is refused (defect 8); a dead pool's task is answered by another pool within seconds,
not the visibility timeout."""

from __future__ import annotations

import signal
import sys
import time

import psutil
import pytest

from broker import connection, processes
from broker.app import sender
from broker.queues import ANSWER_TASK, llm_queue
from producer import fleet
from shared.config import Settings
from shared.state import batch_store, deliveries, fleet_limits, inflight
from shared.state.registry import live_workers
from tests.conftest import stop_process
from tests.helpers import assert_one_line_error, clean_env, ragfleet, start_worker, wait_for

pytestmark = pytest.mark.integration

MODEL = "smollm2-135m"
# the default limits, which clean_env's workers run with
DEFAULT_LIMITS = {"llm_task_time_limit_s": 600, "cpu_task_time_limit_s": 600,
                  "visibility_timeout_s": 660}


def clauses(n: int) -> str:
    return " ".join(f"Clause {i}: after the deductible the plan pays {5 * i % 100} percent of "
                    f"covered costs for service group {i}." for i in range(n))


def send_answer(url: str, client, batch_id: str, context: str, max_tokens: int) -> str:
    """A one-question batch made directly in Redis (its context stored, no retrieval, no
    reference), its answer task sent to the pool; returns the task id. No cpu pool runs here:
    the answer is stored by the model pool and its scoring task waits in the cpu queue."""
    batch_store.create(client, batch_id, {
        "collection": "facts", "version": 1, "models": [MODEL],
        "params": {"top_k": 1, "bm25_weight": 0.3, "max_tokens": max_tokens, "temperature": 0.0},
    }, [{"id": "q1", "question": "List every clause and what the plan pays for it.",
         "reference": None}], {"u1": ["q1"]})
    batch_store.save_contexts(client, batch_id, "u1", {"contexts": [
        {"chunk": 0, "score": 1.0, "document": "plan.pdf", "page": 1, "text": context}],
        "retrieval_s": 0.0})
    task_id = f"answer-{batch_id}"
    sender(url, Settings(redis_url=url)).send_task(
        ANSWER_TASK, args=[batch_id, "u1", MODEL, time.time()], queue=llm_queue(MODEL),
        task_id=task_id)
    return task_id


def ready_pool(client, pid: int) -> None:
    wait_for(lambda: any(w["pid"] == pid and w["state"] == "ready" for w in live_workers(client)),
             180, what="the model pool ready")


def one_ready_pool(redis_url: str, tmp_path):
    """An emptied session Redis and one SmolLM2 pool on it (two threads), ready to answer."""
    client = connection.client(redis_url)
    client.flushdb()
    env = clean_env(REDIS_URL=redis_url, RAGFLEET_DATA_DIR=str(tmp_path / "data"))
    proc = start_worker(["--model", MODEL, "--threads", "2"], env, tmp_path / "pool.log")
    try:
        ready_pool(client, proc.pid)
    except BaseException:
        stop_process(proc)
        raise
    return client, proc


def test_a_task_that_kills_its_pool_process_every_time_fails_after_three_deliveries(
        redis_url, tmp_path):
    client, proc = one_ready_pool(redis_url, tmp_path)
    try:
        worker = psutil.Process(proc.pid)
        task_id = send_answer(redis_url, client, "b-poison", clauses(60), max_tokens=64)
        for started in (1, 2, 3):  # each delivery dies, as an out-of-memory kill would
            wait_for(lambda n=started: deliveries.started(client, task_id) >= n, 120,
                     interval=0.02, what=f"delivery {started}")
            assert batch_store.results(client, "b-poison") == []  # killed before it answered
            for child in worker.children():  # prefork, concurrency 1: the one running it
                child.send_signal(signal.SIGKILL)
        final = wait_for(lambda: (b := batch_store.get(client, "b-poison"))["status"]
                         in batch_store.FINISHED and b, 120, what="the pair settled")
        (result,) = batch_store.results(client, "b-poison")
        assert result["error"] == ("the worker died 3 times running this task "
                                   "(killed or crashed: out of memory?)")
        assert (final["status"], final["failed"]) == ("failed", 1)
        # acknowledged: not delivered a fifth time, its count forgotten, the pool alive
        time.sleep(2)
        assert deliveries.started(client, task_id) == 0
        assert client.llen(llm_queue(MODEL)) == 0 and client.hlen("unacked") == 0
        assert proc.poll() is None
    finally:
        stop_process(proc)


def test_down_lets_a_pool_finish_the_answer_it_is_generating(redis_url, tmp_path):
    client = connection.client(redis_url)
    client.flushdb()
    settings = Settings(data_dir=tmp_path / "data", redis_url=redis_url)
    env = clean_env(REDIS_URL=redis_url, RAGFLEET_DATA_DIR=str(settings.data_path))
    record = processes.spawn(
        fleet.pool_record_name(MODEL),
        [sys.executable, "-m", "producer.cli", "worker", "--model", MODEL, "--threads", "2"],
        tmp_path / "pool.log", env)
    processes.save_record(settings.run_dir, record)
    try:
        ready_pool(client, record.pid)
        # the first worker published the fleet's limits
        assert fleet_limits.published(client) == DEFAULT_LIMITS
        task_id = send_answer(redis_url, client, "b-down", clauses(8), max_tokens=16)
        wait_for(lambda: deliveries.started(client, task_id) == 1, 60, interval=0.02,
                 what="the answer under way")
        said: list[str] = []
        assert fleet.down(settings, say=said.append) == [fleet.pool_record_name(MODEL)]
        assert not record.alive()
        assert not any("did not finish" in line for line in said), said
        # the answer was finished, stored and acknowledged before the pool exited, and its
        # scoring sent
        answer = batch_store.answer(client, "b-down", "u1", MODEL)
        assert answer is not None and answer["answer"], answer
        assert client.llen("cpu") == 1
        assert client.llen(llm_queue(MODEL)) == 0 and client.hlen("unacked") == 0
        # the last worker to stop withdrew the limits: a fleet with new settings may start
        assert fleet_limits.published(client) is None
    finally:
        if record.alive():
            processes.stop(record, 10)


def test_a_worker_with_other_limits_than_the_fleet_is_refused(redis_url, tmp_path):
    client = connection.client(redis_url)
    client.flushdb()
    fleet_limits.join(client, DEFAULT_LIMITS, ttl_s=60)  # a fleet with the defaults
    env = clean_env(REDIS_URL=redis_url, RAGFLEET_DATA_DIR=str(tmp_path / "data"),
                    RAGFLEET_LLM_TASK_TIME_LIMIT_S="30")
    refused = ragfleet("worker", "--cpu", env=env, timeout=120)
    assert_one_line_error(refused, 2, "RAGFLEET_LLM_TASK_TIME_LIMIT_S is 30 here but 600 in "
                                      "the fleet")
    assert live_workers(client) == []
    # `up` refuses too, before it starts anything (its one progress line comes first)
    up = ragfleet("up", "--model", MODEL, env=env, timeout=120)
    assert up.returncode == 2, up.stderr
    assert "RAGFLEET_LLM_TASK_TIME_LIMIT_S is 30 here but 600" in up.stderr.splitlines()[-1]
    assert processes.load_records(tmp_path / "data" / "run") == []
    fleet_limits.check(DEFAULT_LIMITS, fleet_limits.published(client))  # the same: welcome
    fleet_limits.withdraw(client)


def test_a_dead_pools_task_is_answered_by_another_pool_long_before_the_visibility_timeout(
        redis_url, tmp_path):
    client = connection.client(redis_url)
    client.flushdb()
    env = clean_env(REDIS_URL=redis_url, RAGFLEET_DATA_DIR=str(tmp_path / "data"))
    pools = [start_worker(["--model", MODEL, "--threads", "1"], env, tmp_path / f"pool{i}.log")
             for i in (1, 2)]
    try:
        for proc in pools:
            ready_pool(client, proc.pid)
        names = {w["pid"]: w["nodename"] for w in live_workers(client)}
        task_id = send_answer(redis_url, client, "b-takeover", clauses(60), max_tokens=400)
        wait_for(lambda: deliveries.started(client, task_id) == 1, 60, interval=0.02,
                 what="the answer under way")
        (holder,) = [p for p in pools if task_id in inflight.held(client, names[p.pid]).values()]
        (other,) = [p for p in pools if p is not holder]
        died_at = time.monotonic()
        for process in [psutil.Process(holder.pid), *psutil.Process(holder.pid).children()]:
            process.send_signal(signal.SIGKILL)  # the whole pool, as if its host died
        holder.wait(10)
        # the visibility timeout is 660 s: only the live pool's sweep can bring it back this soon
        answer = wait_for(lambda: batch_store.answer(client, "b-takeover", "u1", MODEL), 240,
                          what="the pair answered elsewhere")
        recovered_s = time.monotonic() - died_at
        assert answer["answer"] and answer["worker"] == names[other.pid], answer
        assert batch_store.results(client, "b-takeover") == []  # nothing failed meanwhile
        assert client.llen("cpu") == 1  # its scoring, sent once
        assert recovered_s < DEFAULT_LIMITS["visibility_timeout_s"]
        log = (tmp_path / f"pool{pools.index(other) + 1}.log").read_text()
        assert f"put back 1 task(s) of {names[holder.pid]}, gone from the registry" in log
        print(f"answered elsewhere {recovered_s:.1f} s after the pool died")
        assert deliveries.started(client, task_id) == 0  # returned on its second delivery
        assert inflight.held(client, names[holder.pid]) == {}  # the dead pool's record is gone
        assert client.llen(llm_queue(MODEL)) == 0 and client.hlen("unacked") == 0
    finally:
        for proc in pools:
            stop_process(proc)


def test_the_task_of_a_killed_pool_process_runs_next_not_behind_the_queue(redis_url, tmp_path):
    client, proc = one_ready_pool(redis_url, tmp_path)
    try:
        first = send_answer(redis_url, client, "b-first", clauses(60), max_tokens=64)
        wait_for(lambda: deliveries.started(client, first) == 1, 60, interval=0.02,
                 what="the first answer under way")
        for later in ("b-second", "b-third"):  # queued behind it
            send_answer(redis_url, client, later, clauses(4), max_tokens=8)
        (child,) = psutil.Process(proc.pid).children()
        child.send_signal(signal.SIGKILL)
        answers = {b: wait_for(lambda b=b: batch_store.answer(client, b, "u1", MODEL), 240,
                               what=f"{b} answered")
                   for b in ("b-first", "b-second", "b-third")}
        started = {b: a["started_at"] for b, a in answers.items()}
        assert started["b-first"] < started["b-second"] < started["b-third"], started
        assert batch_store.results(client, "b-first") == []  # not failed: answered
    finally:
        stop_process(proc)
