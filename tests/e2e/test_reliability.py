"""Faults lose nothing: a SIGKILLed pool process or whole worker, a Redis restart, a task over
its time limit, a model that cannot load. Real Redis, real workers, real models; no mocks."""

from __future__ import annotations

import json
import os
import signal
import time

import psutil
import pytest

from broker import connection, embedded_redis
from shared.config import Settings
from shared.state import batch_store
from shared.state.registry import live_workers
from tests.conftest import stop_process
from tests.helpers import clean_env, ragfleet, start_worker, wait_for
from tests.pdf_samples import first_pages_pdf

pytestmark = pytest.mark.e2e

MODEL = "smollm2-135m"
# Limits short enough that a task of a killed worker comes back within a minute or two
# (visibility timeout = longest limit + 60 s, restore sweep every 5 s), long enough for these
# answers on a slow or busy machine. The answers (SmolLM2, a ~600-token prompt, 48 new tokens,
# 2 threads) take about 3 s on an idle machine here and took over 18 s on a fresh clone with a
# compile running beside it, where a 20 s limit failed 4 of these tests: the limit is three
# times that busy figure, for a machine three times slower.
BUSY_ANSWER_S = 20
LLM_LIMIT_S = 3 * BUSY_ANSWER_S
LIMITS = {"RAGFLEET_LLM_TASK_TIME_LIMIT_S": str(LLM_LIMIT_S),
          "RAGFLEET_CPU_TASK_TIME_LIMIT_S": "30", "RAGFLEET_RESTORE_SWEEP_S": "5"}


class Fleet:
    """An embedded Redis we can restart, a cpu worker and model pools, all real processes."""

    def __init__(self, folder, extra_env=None):
        self.folder = folder
        self.settings = Settings(data_dir=folder / "data")
        record = embedded_redis.start(self.settings)
        self.url = record.info["url"]
        self.env = clean_env(REDIS_URL=self.url, RAGFLEET_DATA_DIR=str(folder / "data"),
                             **{**LIMITS, **(extra_env or {})})
        self.client = connection.client(self.url, patient=True)
        self.workers: list = []

    def start(self, *args) -> psutil.Process:
        log = self.folder / f"worker-{len(self.workers)}.log"
        proc = start_worker(list(args), self.env, log)
        self.workers.append(proc)
        queue = "cpu" if "--cpu" in args else f"llm.{args[args.index('--model') + 1]}"
        wait_for(lambda: any(w["pid"] == proc.pid and w["state"] in ("ready", "failed")
                             for w in live_workers(self.client) if queue in w["queues"]),
                 180, what=f"{queue} worker")
        return psutil.Process(proc.pid)

    def ingest(self) -> None:
        pdf = self.folder / "plan.pdf"
        pdf.write_bytes(first_pages_pdf(12))
        done = ragfleet("ingest", str(pdf), "-c", "plan", "--wait", env=self.env, timeout=300)
        assert done.returncode == 0, done.stderr

    def ask(self, questions: list[dict], *extra: str, models=(MODEL,)) -> str:
        path = self.folder / f"q{time.monotonic_ns()}.jsonl"
        path.write_text("".join(json.dumps(q) + "\n" for q in questions))
        args = ["ask", str(path), "-c", "plan", "--no-wait", "--json", *extra]
        for model in models:
            args += ["-m", model]
        out = ragfleet(*args, env=self.env, timeout=120)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)["batch"]

    def wait_finished(self, batch_id: str, timeout: float = 600) -> dict:
        return wait_for(lambda: (b := batch_store.get(self.client, batch_id))["status"]
                        in batch_store.FINISHED and b, timeout, interval=1, what="batch finished")

    def close(self) -> None:
        for proc in self.workers:
            stop_process(proc)
        embedded_redis.stop(self.settings)


@pytest.fixture()
def fleet(tmp_path):
    fleet = Fleet(tmp_path)
    try:
        yield fleet
    finally:
        fleet.close()


def questions(n: int) -> list[dict]:
    topics = ["balance billing", "in-network providers", "out-of-network costs", "deductibles",
              "copays", "preventive care", "emergency services", "prescriptions"]
    return [{"id": f"q{i}", "question": f"What does the plan say about {topics[i % 8]}?",
             "reference": f"The plan describes {topics[i % 8]}."} for i in range(n)]


def assert_exactly_once(fleet: Fleet, batch_id: str, n_questions: int, models=(MODEL,)) -> None:
    batch = batch_store.get(fleet.client, batch_id)
    results = batch_store.results(fleet.client, batch_id)
    pairs = [(r["question_id"], r["model"]) for r in results]
    assert len(pairs) == len(set(pairs)) == n_questions * len(models)  # none lost, none doubled
    assert batch["completed"] + batch["failed"] == batch["total"] == len(pairs)
    assert batch["status"] == "completed" and batch["failed"] == 0, results


def running_child(worker: psutil.Process) -> psutil.Process:
    return wait_for(lambda: next(iter(worker.children()), None), 30, what="pool process")


def test_sigkilled_pool_process_mid_batch_loses_and_doubles_nothing(fleet):
    fleet.start("--cpu")
    worker = fleet.start("--model", MODEL, "--threads", "2")
    fleet.ingest()
    batch_id = fleet.ask(questions(6), "--max-tokens", "48")
    wait_for(lambda: batch_store.get(fleet.client, batch_id)["completed"] >= 2, 300,
             what="two answers")
    child = running_child(worker)
    child.send_signal(signal.SIGKILL)  # the prefork parent requeues its task at once
    wait_for(lambda: child.pid not in [c.pid for c in worker.children()], 30, what="new child")
    fleet.wait_finished(batch_id)
    assert_exactly_once(fleet, batch_id, 6)


@pytest.mark.parametrize("parallel", [1, 3], ids=["prefork", "batching"])
def test_sigkilled_worker_task_returns_after_the_visibility_timeout(tmp_path, parallel):
    # parallel 3: the threads pool holds three unacknowledged tasks when it dies. Three answers
    # decoded together take about twice as long each: the limit doubles (the visibility
    # timeout grows with it).
    limit = LLM_LIMIT_S * (2 if parallel > 1 else 1)
    limits = {**LIMITS, "RAGFLEET_LLM_TASK_TIME_LIMIT_S": str(limit)}
    fleet = Fleet(tmp_path, limits)
    try:
        pool = ["--model", MODEL, "--threads", "2", "--parallel", str(parallel)]
        fleet.start("--cpu")
        worker = fleet.start(*pool)
        fleet.ingest()
        batch_id = fleet.ask(questions(4 + parallel), "--max-tokens", "48")
        wait_for(lambda: batch_store.get(fleet.client, batch_id)["completed"] >= 1, 300,
                 what="first answer")
        os.killpg(worker.pid, signal.SIGKILL)  # the whole pool: nobody is left to requeue
        killed_at = time.monotonic()
        fleet.start(*pool)
        final = fleet.wait_finished(batch_id, timeout=900)
        settings = Settings(**{k.removeprefix("RAGFLEET_").lower(): int(v)
                               for k, v in limits.items()})
        # the unacknowledged tasks came back within the visibility timeout plus a sweep or two
        assert time.monotonic() - killed_at < settings.visibility_timeout + 120
        assert final["status"] == "completed"
        assert_exactly_once(fleet, batch_id, 4 + parallel)
    finally:
        fleet.close()


def test_redis_restart_mid_batch_loses_nothing(fleet):
    fleet.start("--cpu")
    fleet.start("--model", MODEL, "--threads", "2")
    fleet.ingest()
    batch_id = fleet.ask(questions(6), "--max-tokens", "48")
    wait_for(lambda: batch_store.get(fleet.client, batch_id)["completed"] >= 2, 300,
             what="two answers")
    before = {(r["question_id"], r["answer"]) for r in batch_store.results(fleet.client, batch_id)}
    assert embedded_redis.stop(fleet.settings)  # SIGTERM: the append-only file is flushed
    time.sleep(3)
    record = embedded_redis.start(fleet.settings)
    assert record.info["url"] == fleet.url  # same port: every client reconnects to it
    fleet.wait_finished(batch_id)
    assert_exactly_once(fleet, batch_id, 6)
    after = {(r["question_id"], r["answer"]) for r in batch_store.results(fleet.client, batch_id)}
    assert before <= after  # what was stored before the restart is still there
    status = ragfleet("collections", "show", "plan", "--json", env=fleet.env, timeout=60)
    assert json.loads(status.stdout)["version"] == 1


def test_task_over_its_time_limit_fails_with_a_reason_and_the_batch_goes_on(tmp_path):
    # One thread: a 330-token prompt takes about 2.7 s, well inside the 5 s soft limit; the slow
    # question's 1,500 digits are 1,500 tokens (about 12 s of prompt evaluation), well past the
    # 6 s hard limit. Whichever limit stops it, the reason is stored.
    fleet = Fleet(tmp_path, {"RAGFLEET_LLM_TASK_TIME_LIMIT_S": "6"})
    try:
        fleet.start("--cpu")
        fleet.start("--model", MODEL, "--threads", "1")
        fleet.ingest()
        digits = " ".join(str(i) for i in range(1000, 1300))
        slow = {"id": "slow", "question": f"Add up these numbers: {digits}"}
        quick = {"id": "quick", "question": "What is a copay?"}
        batch_id = fleet.ask([slow, quick], "--top-k", "1", "--max-tokens", "8")
        final = fleet.wait_finished(batch_id, timeout=300)
        by_id = {r["question_id"]: r for r in batch_store.results(fleet.client, batch_id)}
        assert "exceeded the time limit of 6 s" in by_id["slow"]["error"]
        assert by_id["quick"]["error"] is None and by_id["quick"]["answer"]
        assert (final["completed"], final["failed"], final["status"]) == (1, 1, "completed")
    finally:
        fleet.close()


def test_model_that_cannot_load_fails_its_results_instead_of_looping(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "tinyllama-1.1b-chat-v1.0.Q5_K_M.gguf").write_bytes(b"GGUF" + b"\x03\x00" * 5000)
    fleet = Fleet(tmp_path, {"RAGFLEET_MODELS_DIR": str(models)})
    try:
        fleet.start("--cpu")
        fleet.start("--model", "tinyllama-1.1b-chat", "--threads", "1")
        (entry,) = [w for w in live_workers(fleet.client) if w["model"] == "tinyllama-1.1b-chat"]
        assert entry["state"] == "failed"
        fleet.ingest()
        refused = ragfleet("ask", str(_write(tmp_path, questions(1))), "-c", "plan",
                           "-m", "tinyllama-1.1b-chat", env=fleet.env, timeout=60)
        assert refused.returncode == 2 and "no running pool" in refused.stderr
        batch_id = fleet.ask(questions(3), "--queue-anyway", models=("tinyllama-1.1b-chat",))
        final = fleet.wait_finished(batch_id, timeout=120)
        assert (final["status"], final["failed"]) == ("failed", 3)
        for result in batch_store.results(fleet.client, batch_id):
            assert "cannot load" in result["error"]
    finally:
        fleet.close()


def _write(folder, rows):
    path = folder / "one.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_sigkilled_cpu_worker_during_ingestion_keeps_the_previous_version(tmp_path):
    # the redelivered job reloads the embedder and embeds again: give it more than 30 s
    fleet = Fleet(tmp_path, {"RAGFLEET_CPU_TASK_TIME_LIMIT_S": "300"})
    try:
        _kill_cpu_worker_during_ingestion(fleet)
    finally:
        fleet.close()


def _kill_cpu_worker_during_ingestion(fleet: Fleet) -> None:
    from tests.pdf_samples import PLUS_PDF

    cpu = fleet.start("--cpu")
    fleet.ingest()  # version 1: the first pages of the Standard plan
    before = collection_version(fleet)
    assert before["version"] == 1
    plus = fleet.folder / "plus.pdf"
    plus.write_bytes(first_pages_pdf(40, PLUS_PDF))  # about 15 s of embedding on one thread
    job = json.loads(ragfleet("ingest", str(plus), "-c", "plan", "--no-wait", "--json",
                              env=fleet.env, timeout=120).stdout)
    wait_for(lambda: _job(fleet, job["id"])["stage"] == "embed", 300, interval=0.2,
             what="embedding under way")
    child = running_child(cpu)
    child.send_signal(signal.SIGKILL)  # mid-embedding: the parent requeues the job
    assert collection_version(fleet) == before  # the previous version is still current
    done = wait_for(lambda: (j := _job(fleet, job["id"]))["state"] in ("done", "failed") and j,
                    400, interval=1, what="ingestion redone")
    assert done["state"] == "done", done
    after = collection_version(fleet)
    assert after["version"] == 2
    assert {d["name"] for d in after["documents"]} == {"plan.pdf", "plus.pdf"}


def collection_version(fleet: Fleet) -> dict:
    out = ragfleet("collections", "show", "plan", "--json", env=fleet.env, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _job(fleet: Fleet, job_id: str) -> dict:
    from shared.state import jobs

    return jobs.get(fleet.client, job_id)
