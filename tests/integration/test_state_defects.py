"""Issue 14's state defects, each against a real Redis: version numbers never reused, a save that
fails after its transaction keeps the version it made current, deleting an incomplete
collection, resuming an interrupted `ask`, atomic and idempotent reopening, waiting with a
timeout."""

from __future__ import annotations

import threading

import pytest
import redis

from producer import batch_client, cli
from shared.config import get_settings
from shared.errors import UsageError
from shared.llm.catalog import Catalog, ModelSettings
from shared.state import batch_store, collection_store, keys
from shared.state.collection_cache import CollectionCache
from shared.state.collection_store import Manifest, UnknownCollection

pytestmark = pytest.mark.integration

MODELS = ["small", "big"]


@pytest.fixture()
def client(redis_url) -> redis.Redis:
    """Bytes in, bytes out, as the workers' client (index parts are binary)."""
    conn = redis.Redis.from_url(redis_url)
    conn.flushdb()
    return conn


def save(client, content: bytes, name: str = "plan") -> int:
    meta = Manifest(name=name, version=0, documents=[], chunks=1, embedding_model="e", dim=2,
                    chunk_size=100, chunk_overlap=0)
    return collection_store.save(client, meta, {"chunks": content, "faiss": b"f", "bm25": b"b"},
                                 base=collection_store.current_version(client, name))


def version_keys(client, name: str = "plan") -> list[bytes]:
    return sorted(client.scan_iter(match=f"{keys.PREFIX}:collection:{name}:v*"))


class SoftLimit(Exception):
    """What a task runner raises at its soft time limit."""


# -- collections: versions never reused, rollback only of what is not current ------------------

def test_a_recreated_collection_never_reuses_a_version_number(client):
    cache = CollectionCache(client, build=lambda parts: parts["chunks"])
    assert save(client, b"old content") == 1
    assert cache.get("plan") == (collection_store.manifest(client, "plan", 1), b"old content")
    collection_store.delete(client, "plan")
    assert save(client, b"new content") == 2
    meta, content = cache.get("plan")  # a long-lived worker's cache that held the old v1
    assert (meta.version, content) == (2, b"new content")
    assert cache.loads == 2


def test_save_keeps_a_version_that_its_transaction_made_current(client, monkeypatch):
    save(client, b"v1")
    execute = redis.client.Pipeline.execute

    def limit_after_exec(pipe, *args, **kwargs):
        replies = execute(pipe, *args, **kwargs)
        if pipe.transaction:  # the pointer's MULTI/EXEC, not the pipeline storing the parts
            raise SoftLimit()  # while EXEC's reply was read
        return replies

    monkeypatch.setattr(redis.client.Pipeline, "execute", limit_after_exec)
    with pytest.raises(SoftLimit):
        save(client, b"v2")
    monkeypatch.undo()
    assert collection_store.current_version(client, "plan") == 2
    meta, parts = collection_store.load_parts(client, "plan")
    assert (meta.version, parts["chunks"]) == (2, b"v2")
    assert collection_store.delete(client, "plan") == 2


def test_save_rolls_back_a_version_that_never_became_current(client, monkeypatch):
    save(client, b"v1")

    def limit_before_exec(pipe, *args, **kwargs):
        raise SoftLimit()

    monkeypatch.setattr(redis.client.Pipeline, "execute", limit_before_exec)
    with pytest.raises(SoftLimit):
        save(client, b"v2")
    monkeypatch.undo()
    assert collection_store.current_version(client, "plan") == 1
    assert all(b":v1:" in k for k in version_keys(client))  # nothing of v2 is left


def test_a_save_on_a_base_another_ingestion_replaced_is_refused_and_leaves_nothing(client):
    """Compare-and-set: two ingestions built on v1 (the lock was lost); the first saves v2, the
    second must not replace it (its documents would be lost)."""
    save(client, b"v1")
    meta = Manifest(name="plan", version=0, documents=[], chunks=1, embedding_model="e", dim=2,
                    chunk_size=100, chunk_overlap=0)
    save(client, b"v2 by the first")
    with pytest.raises(collection_store.BaseChanged, match="changed from version 1 to 2"):
        collection_store.save(client, meta, {"chunks": b"v3", "faiss": b"f", "bm25": b"b"},
                              base=1)
    meta, parts = collection_store.load_parts(client, "plan")
    assert (meta.version, parts["chunks"]) == (2, b"v2 by the first")
    assert not any(b":v3:" in k for k in version_keys(client))  # the refused version is gone


def test_a_save_that_loses_the_race_inside_its_transaction_is_refused(client, monkeypatch):
    """Another save lands between this one's check and its EXEC: WATCH makes EXEC fail."""
    save(client, b"v1")
    execute = redis.client.Pipeline.execute

    def another_save_first(pipe, *args, **kwargs):
        monkeypatch.setattr(redis.client.Pipeline, "execute", execute)
        save(client, b"v2 by the other")  # its own transaction, on another connection
        return execute(pipe, *args, **kwargs)

    monkeypatch.setattr(redis.client.Pipeline, "execute", another_save_first)
    with pytest.raises(collection_store.BaseChanged):
        save(client, b"lost the race")  # took version 2; the other took 3 and saved first
    meta, parts = collection_store.load_parts(client, "plan")
    assert (meta.version, parts["chunks"]) == (3, b"v2 by the other")
    assert not any(b":v2:" in k for k in version_keys(client))  # the loser's version is gone


def test_delete_tolerates_a_missing_manifest(client):
    save(client, b"v1")
    save(client, b"v2")
    client.delete(keys.collection_version_key("plan", 2, "manifest"),
                  keys.collection_version_key("plan", 1, "manifest"))
    assert collection_store.delete(client, "plan") == 2
    assert version_keys(client) == []
    assert collection_store.current_version(client, "plan") is None
    assert collection_store.list_collections(client) == []
    with pytest.raises(UnknownCollection):
        collection_store.delete(client, "plan")
    assert save(client, b"again") == 3


# -- batches: interrupted sends, resume ---------------------------------------------------------

class FakeApp:
    """Records send_task calls; raises `fail` at the send numbered fail_at (from 1)."""

    def __init__(self, fail_at: int | None = None, fail: BaseException | None = None):
        self.sent: list[list] = []
        self.fail_at, self.fail = fail_at, fail or KeyboardInterrupt()

    def send_task(self, name, args):
        if self.fail_at is not None and len(self.sent) + 1 == self.fail_at:
            raise self.fail
        self.sent.append(args)


def submit(client, tmp_path, app) -> None:
    questions = tmp_path / "q.jsonl"
    questions.write_text('{"id": "a", "question": "One?"}\n{"id": "b", "question": "Two?"}\n'
                         '{"id": "c", "question": "Three?"}\n')
    catalog = Catalog(models={m: ModelSettings(name=m, file=f"{m}.gguf", n_ctx=2048,
                                               max_tokens=64) for m in MODELS})
    params = {"top_k": 2, "bm25_weight": 0.3, "max_tokens": 32, "temperature": None,
              "min_answer_tokens": 16}
    batch_client.submit(app, client, catalog, questions, "plan", MODELS, params,
                        queue_anyway=True)


def only_batch(client) -> str:
    (batch_id,) = client.zrange(keys.BATCHES_INDEX, 0, -1)
    return batch_id.decode()


def settle_all(client, batch_id: str, outcome_of) -> None:
    """Record every open pair: outcome_of(question id, model) -> completed/failed/cancelled."""
    unit_of = {q: u for u, ids in batch_store.units(client, batch_id).items() for q in ids}
    for question in batch_store.questions(client, batch_id):
        for model in MODELS:
            outcome = outcome_of(question["id"], model)
            record = batch_store.result_record(
                question, model, unit_of[question["id"]], error="x" if outcome == "failed" else None,
                cancelled=outcome == "cancelled")
            batch_store.record(client, batch_id, question["id"], model, record, outcome)


def assert_counters_match_results(client, batch_id: str) -> None:
    batch = batch_store.get(client, batch_id)
    stored = batch_store.results(client, batch_id)
    assert batch["completed"] + batch["failed"] + batch["cancelled"] == len(stored)
    for model in MODELS:
        counts = {o: 0 for o in batch_store.OUTCOMES}
        for r in stored:
            if r["model"] == model:
                counts["cancelled" if r["cancelled"] else "failed" if r["error"] else "completed"] += 1
        assert batch["per_model"][model] == counts


def test_resume_sends_the_units_an_interrupted_ask_never_sent(client, tmp_path):
    save(client, b"index")
    interrupted = FakeApp(fail_at=2)
    with pytest.raises(KeyboardInterrupt):
        submit(client, tmp_path, interrupted)
    batch_id = only_batch(client)
    units = list(batch_store.units(client, batch_id))
    assert [args[1] for args in interrupted.sent] == units[:1]
    assert batch_store.status(client, batch_id) == batch_store.QUEUED

    app = FakeApp()
    assert batch_client.resume(app, client, batch_id) == 2 * len(MODELS)
    assert app.sent == [[batch_id, u, sorted(MODELS)] for u in units[1:]]
    with pytest.raises(UsageError, match=f"batch {batch_id} is still queued"):
        batch_client.resume(FakeApp(), client, batch_id)  # everything is sent now


def test_a_resume_that_fails_to_send_can_be_resumed_again(client, tmp_path):
    save(client, b"index")
    submit(client, tmp_path, FakeApp())
    batch_id = only_batch(client)
    settle_all(client, batch_id, lambda q, m: "failed" if q == "b" else "completed")
    assert batch_store.status(client, batch_id) == batch_store.COMPLETED

    broken = FakeApp(fail_at=1, fail=redis.exceptions.ConnectionError("Redis went away"))
    with pytest.raises(redis.exceptions.ConnectionError):
        batch_client.resume(broken, client, batch_id)
    assert_counters_match_results(client, batch_id)
    app = FakeApp()
    assert batch_client.resume(app, client, batch_id) == len(MODELS)
    unit_b = next(u for u, ids in batch_store.units(client, batch_id).items() if "b" in ids)
    assert app.sent == [[batch_id, unit_b, sorted(MODELS)]]
    open_pairs = [(q["id"], m) for q in batch_store.questions(client, batch_id)
                       for m in MODELS if not batch_store.has_result(client, batch_id, q["id"], m)]
    assert open_pairs == [("b", m) for m in MODELS]


def test_reopen_is_atomic_and_idempotent(client, tmp_path):
    save(client, b"index")
    submit(client, tmp_path, FakeApp())
    batch_id = only_batch(client)
    outcome = {"a": "completed", "b": "failed", "c": "cancelled"}
    settle_all(client, batch_id, lambda q, m: outcome[q] if m == "small" else "failed")
    unit_of = {q: u for u, ids in batch_store.units(client, batch_id).items() for q in ids}
    batch_store.save_answer(client, batch_id, unit_of["b"], "small", {"answer": "kept?"})
    batch_store.save_answer(client, batch_id, unit_of["a"], "small", {"answer": "kept"})

    forgotten, barrier = [], threading.Barrier(8)

    def resume() -> None:
        barrier.wait()
        forgotten.append(batch_store.reopen(client, batch_id))

    threads = [threading.Thread(target=resume) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(forgotten) == [0] * 7 + [5]
    assert batch_store.reopen(client, batch_id) == 0  # and once more in a row
    assert_counters_match_results(client, batch_id)
    batch = batch_store.get(client, batch_id)
    assert (batch["completed"], batch["failed"], batch["cancelled"]) == (1, 0, 0)
    assert (batch["status"], batch["finished_at"]) == (batch_store.QUEUED, None)
    assert batch_store.answer(client, batch_id, unit_of["b"], "small") is None
    assert batch_store.answer(client, batch_id, unit_of["a"], "small") == {"answer": "kept"}
    assert sorted(p for pairs in batch_store.unsent(client, batch_id).values() for p in pairs) == \
        sorted((q, m) for q in "abc" for m in MODELS if (q, m) != ("a", "small"))


def test_a_resume_interleaved_with_another_forgets_each_result_once(client, redis_url,
                                                                    tmp_path):
    save(client, b"index")
    submit(client, tmp_path, FakeApp())
    batch_id = only_batch(client)
    settle_all(client, batch_id, lambda q, m: "failed" if m == "big" else "completed")

    class Interleaved(redis.Redis):
        """Another resume runs right after this client first reads the batch's results."""

        fired = False

        def hgetall(self, name):
            found = super().hgetall(name)
            if name == keys.batch_key(batch_id, "results") and not self.fired:
                self.fired = True
                batch_store.reopen(client, batch_id)
            return found

    batch_store.reopen(Interleaved.from_url(redis_url), batch_id)
    assert_counters_match_results(client, batch_id)
    assert batch_store.get(client, batch_id)["per_model"]["big"]["failed"] == 0


# -- waiting with a timeout -----------------------------------------------------------------------

@pytest.fixture()
def cli_env(redis_url, tmp_path, monkeypatch):
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("RAGFLEET_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.parametrize("command", [["watch", "{batch}"],
                                     ["ask", "--resume", "{batch}", "--wait"]])
def test_waiting_gives_up_at_its_timeout_with_one_line(client, tmp_path, cli_env, capsys,
                                                        command):
    save(client, b"index")
    with pytest.raises(KeyboardInterrupt):  # an interrupted ask: --resume may send the rest
        submit(client, tmp_path, FakeApp(fail_at=1))
    batch_id = only_batch(client)
    with pytest.raises(SystemExit) as exited:
        cli.main([arg.format(batch=batch_id) for arg in command] + ["--timeout", "1"])
    assert exited.value.code == 1
    assert capsys.readouterr().err.splitlines()[-1] == \
        f"error: batch {batch_id} not finished after 1 s"
