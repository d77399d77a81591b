"""The study as a system, through the real CLI: a real fleet (`ragfleet up`: embedded Redis,
cpu pool, SmolLM2 and Gemma pools), the real Northwind PDF, real answers, real scores."""

from __future__ import annotations

import json

import numpy as np
import pytest

from broker.app import sender
from broker.queues import ANSWER_TASK, llm_queue
from shared.config import Settings
from shared.pipeline.answer_ending import trim_to_last_sentence
from shared.retrieval.embeddings import model_path
from shared.state import batch_store
from tests.e2e.batch_data import MODELS, QUESTIONS, ask, write_jsonl
from tests.helpers import assert_one_line_error, ragfleet, wait_for

pytestmark = pytest.mark.e2e

def test_every_pair_answered_and_counted_once(finished):
    summary, report = finished
    assert summary["status"] == "completed"
    assert (summary["total"], summary["completed"], summary["failed"]) == (8, 8, 0)
    pairs = [(r["question_id"], r["model"]) for r in report["results"]]
    assert sorted(pairs) == sorted((q["id"], m) for q in QUESTIONS for m in MODELS)
    for r in report["results"]:
        assert r["answer"] and r["error"] is None
        assert r["model_file"].endswith(".gguf") and r["worker"] and r["backend"] == "cpu"
        assert 0 < r["completion_tokens"] <= 25 and r["prompt_tokens"] > 100
        assert r["prompt_tokens"] + 24 <= 2048
    assert {s["model"]: s["answered"] for s in report["summary"]} == {m: 4 for m in MODELS}


def test_answered_questions_are_counted_apart_from_scored_ones(fleet, finished):
    _, client, _ = fleet
    summary, _ = finished
    batch = batch_store.get(client, summary["batch"])
    assert batch["answered"] == {m: 4 for m in MODELS}  # the repeated question counts twice


def test_identical_questions_are_answered_once(finished):
    _, report = finished
    for model in MODELS:
        by_id = {r["question_id"]: r for r in report["results"] if r["model"] == model}
        a, b = by_id["network"], by_id["network-again"]
        assert a["answer"] == b["answer"] and a["response_s"] == b["response_s"]
        assert a["reference"] != b["reference"]  # each id keeps its own reference and score


def test_stored_cosines_match_an_independent_recomputation(finished):
    from sentence_transformers import SentenceTransformer

    _, report = finished
    model = SentenceTransformer(model_path(), device="cpu")
    for r in report["results"]:
        if r["reference"] is None:
            assert r["cosine"] is None  # stored unscored
            continue
        a, b = model.encode([r["answer"], r["reference"]])
        expected = float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
        assert r["cosine"] == pytest.approx(expected, abs=1e-4)
    billing = [r for r in report["results"] if r["question_id"] == "billing"][0]
    assert "[" not in billing["reference"]  # the citation is not part of the scored text
    assert billing["sources"] == ["Northwind_Standard_Benefits_Details.pdf#page=7"]


def test_timings_add_up(finished):
    _, report = finished
    for r in report["results"]:
        parts = (r["retrieval_s"], r["queue_s"], r["prompt_s"], r["ttft_s"], r["generation_s"])
        assert all(p >= 0 for p in parts)
        assert r["response_s"] == pytest.approx(r["ttft_s"] + r["generation_s"], abs=1e-6)
        assert r["total_s"] == pytest.approx(sum(parts), abs=1e-6)
        assert r["ttft_s"] > 0


def test_every_model_got_the_same_contexts(finished):
    _, report = finished
    pages = {}
    for r in report["results"]:
        pages.setdefault(r["question_id"], []).append(tuple(r["pages"]))
    for question_id, seen in pages.items():
        # the same retrieval; a model may only keep fewer of them (trimmed to fit its n_ctx)
        longest = max(seen, key=len)
        assert all(longest[:len(s)] == s for s in seen), question_id


def test_duplicate_delivery_stores_nothing_twice(fleet, finished):
    env, client, _ = fleet
    summary, report = finished
    batch_id = summary["batch"]
    url = env["REDIS_URL_FOR_TESTS"]
    app = sender(url, Settings(redis_url=url))
    unit = report["results"][0]["unit"]
    before = batch_store.get(client, batch_id)
    app.send_task(ANSWER_TASK, args=[batch_id, unit, MODELS[0], 0.0], queue=llm_queue(MODELS[0]))
    wait_for(lambda: client.llen(llm_queue(MODELS[0])) == 0, 60, what="duplicate consumed")
    after = batch_store.get(client, batch_id)
    assert (after["completed"], after["failed"]) == (before["completed"], before["failed"])
    assert len(batch_store.results(client, batch_id)) == 8


def test_result_formats(fleet, finished):
    env, _, folder = fleet
    batch_id = finished[0]["batch"]
    seed = ragfleet("results", batch_id, "--format", "seed", env=env, timeout=120).stdout.splitlines()
    assert seed[0] == "model;question;cosine;resp_time" and len(seed) == 9
    model, question, cosine, resp = seed[1].split(";")
    assert model in MODELS and float(resp) > 0
    csv_out = folder / "r.csv"
    written = ragfleet("results", batch_id, "--format", "csv", "-o", str(csv_out), env=env)
    assert written.returncode == 0 and csv_out.read_text().startswith("question_id,model,")
    md = ragfleet("results", batch_id, "--format", "md", env=env, timeout=120).stdout
    assert "| smollm2-135m |" in md and "COSINE MEAN" in md
    table = ragfleet("results", batch_id, env=env, timeout=120).stdout
    assert "gemma3-270m" in table and "SPEEDUP" in table
    listing = json.loads(ragfleet("batches", "--json", env=env, timeout=60).stdout)
    assert batch_id in [b["id"] for b in listing["batches"]]


def test_recommend_names_the_model_within_limits_or_fails(fleet, finished):
    """--recommend weighs the two pools' measured accuracy, latency and peak memory; limits
    nothing meets fail the command with one line, a CI job's guard on a model choice."""
    env, _, _ = fleet
    batch_id, summary = finished[0]["batch"], finished[1]["summary"]
    advice = json.loads(ragfleet("results", batch_id, "--recommend", "--format", "json",
                                 env=env, timeout=120).stdout)["recommendation"]
    best = max(summary, key=lambda s: s["cosine_mean"])
    assert advice["choice"]["run"] == best["model"]
    assert advice["choice"]["memory_bytes"] == best["peak_rss_bytes"] > 0
    assert {r["run"] for r in advice["pareto_front"]} <= set(MODELS)
    assert advice["choice"]["run"] in {r["run"] for r in advice["pareto_front"]}
    smallest = min(summary, key=lambda s: s["peak_rss_bytes"])
    limit = f"{(smallest['peak_rss_bytes'] + 2**20) // 2**20}MB"  # only the smallest fits
    table = ragfleet("results", batch_id, "--recommend", "--max-memory", limit, env=env,
                     timeout=120)
    assert table.returncode == 0, table.stderr
    assert "Recommended (memory <= " in table.stdout
    assert f": {smallest['model']}: cosine" in table.stdout
    refused = ragfleet("results", batch_id, "--recommend", "--max-memory", "1MB", env=env,
                       timeout=120)
    assert_one_line_error(refused, 1, "no model meets the limits (memory <= 1 MiB)")
    bad = ragfleet("results", batch_id, "--max-latency", "soon", env=env, timeout=120)
    assert_one_line_error(bad, 2, "--max-latency soon")


def test_cancel_then_resume(fleet):
    env, client, folder = fleet
    many = [{"id": f"c{i}", "question": f"What does the plan say about topic number {i}?"}
            for i in range(6)]
    result = ask(env, write_jsonl(folder / "many.jsonl", many), "--no-wait", "--json")
    assert result.returncode == 0, result.stderr
    batch_id = json.loads(result.stdout)["batch"]
    cancelled = ragfleet("cancel", batch_id, "--json", env=env, timeout=60)
    assert json.loads(cancelled.stdout)["status"] == "cancelled"
    batch = batch_store.get(client, batch_id)
    assert batch["cancelled"] > 0
    assert batch["completed"] + batch["failed"] + batch["cancelled"] == batch["total"] == 12
    resumed = ragfleet("ask", "--resume", batch_id, "--wait", "--json", env=env, timeout=900)
    assert resumed.returncode == 0, resumed.stderr
    final = json.loads(resumed.stdout)
    assert (final["status"], final["completed"], final["cancelled"]) == ("completed", 12, 0)
    assert len(batch_store.results(client, batch_id)) == 12


def test_prompt_that_cannot_fit_fails_with_its_reason(fleet):
    env, client, folder = fleet
    long_question = [{"id": "huge", "question": "Explain this. " + "coverage details " * 230}]
    path = write_jsonl(folder / "huge.jsonl", long_question)
    # the answer must keep 1900 tokens of room (a batch setting, taken from the producer)
    result = ragfleet("ask", str(path), "-c", "nw", "-m", MODELS[0], "--max-tokens", "1900",
                      "--wait", "--json", env={**env, "RAGFLEET_MIN_ANSWER_TOKENS": "1900"},
                      timeout=600)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["status"], summary["failed"]) == ("failed", 1)
    (stored,) = batch_store.results(client, summary["batch"])
    assert "does not fit n_ctx 2048" in stored["error"]


def test_limit_repeat_retrieval_metrics_and_gates(fleet):
    """--limit asks the first questions, --repeat each N times with their own seeds; the
    summary gives the spread and the retrieval hit rate where references cite a page; gates
    fail the command with one line."""
    env, client, folder = fleet
    path = write_jsonl(folder / "repeat.jsonl", QUESTIONS)
    result = ragfleet("ask", str(path), "-c", "nw", "-m", MODELS[0], "--top-k", "2",
                      "--max-tokens", "24", "--limit", "2", "--repeat", "2", "--temperature",
                      "0.8", "--wait", "--json", env=env, timeout=900)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["status"], summary["completed"], summary["total"]) == ("completed", 4, 4)
    stored = {r["question_id"]: r for r in batch_store.results(client, summary["batch"])}
    assert sorted(stored) == ["billing#1", "billing#2", "network#1", "network#2"]
    assert [stored[f"billing#{k}"]["sampling"]["seed"] for k in (1, 2)] == [0, 1]
    assert stored["billing#1"]["retrieval"]["cited"] == [
        "Northwind_Standard_Benefits_Details.pdf#page=7"]
    assert stored["network#1"]["retrieval"] is None  # its reference cites no page
    table = ragfleet("results", summary["batch"], env=env, timeout=120)
    assert "4 questions (first 2 of the file), each asked 2 times" in table.stdout
    assert "spread over 2 repeats" in table.stdout
    assert "retrieval: a cited page in the top 2 for" in table.stdout and "of 1 questions" in \
        table.stdout
    failed = ragfleet("results", summary["batch"], "--fail-under", "cosine=0.99",
                      "--fail-over", "latency_p95=0.001", env=env, timeout=120)
    assert_one_line_error(failed, 1, "gate failed: smollm2-135m cosine", "latency_p95")
    passed = ragfleet("results", summary["batch"], "--fail-under", "cosine=0.01",
                      "--fail-over", "latency_p95=600", env=env, timeout=120)
    assert passed.returncode == 0, passed.stderr


def test_the_studys_max_tokens_and_prompt_run_capped_by_the_room_left(fleet, finished):
    """max_tokens 2000 at n_ctx 2048, as the study asked: accepted, contexts kept while the
    answer keeps its minimum room, generation capped at what is left; the study's prompt and
    the batch's sampling recorded with every answer."""
    env, client, folder = fleet
    path = write_jsonl(folder / "study.jsonl", QUESTIONS[:1])
    result = ragfleet("ask", str(path), "-c", "nw", "-m", MODELS[0], "--top-k", "3",
                      "--max-tokens", "2000", "--prompt", "study", "--repeat-penalty", "1.2",
                      "--wait", "--json", env=env, timeout=900)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["status"], summary["completed"]) == ("completed", 1)
    (stored,) = batch_store.results(client, summary["batch"])
    assert stored["contexts_used"] == 3 and stored["prompt"] == "study@v1"
    assert stored["max_tokens"] == 2048 - stored["prompt_tokens"] < 2000
    assert stored["completion_tokens"] <= stored["max_tokens"]
    assert stored["sampling"] == {"temperature": 0.01, "top_p": 1.0, "top_k": 40,
                                  "repeat_penalty": 1.2, "repeat_last_n": 64, "seed": 0}
    # the same question in the session's first batch (default prompt): compared side by side
    compared = ragfleet("compare", finished[0]["batch"], summary["batch"], "--json",
                        "--recommend", "--html", str(folder / "compare.html"), env=env,
                        timeout=120)
    assert compared.returncode == 0, compared.stderr
    result = json.loads(compared.stdout)
    assert result["questions"] == 1
    assert len(result["summary"]) == 3  # two models there, one here
    # the first batch named no prompt: SmolLM2 answered with the default, Gemma 3 with its
    # catalog's own (the study's); this one named the study's
    assert sorted(s["prompt"] for s in result["summary"]) == \
        ["sentences@v1", "study@v1", "study@v1"]
    assert [s["prompt"] for s in result["summary"] if "gemma3-270m" in s["run"]] == ["study@v1"]
    page = (folder / "compare.html").read_text()
    assert "compare" in page
    choice = result["recommendation"]["choice"]["run"]
    assert choice == max(result["summary"], key=lambda s: s["cosine_mean"])["run"]
    assert f"Recommended (no limits): {choice}" in page


def test_an_answer_stopped_at_max_tokens_ends_with_its_last_complete_sentence(fleet):
    """A cap that cuts the answer: stored trimmed back to its last complete sentence, the
    dropped words kept beside it; --keep-cut-endings stores the answer as generated."""
    env, client, folder = fleet
    path = write_jsonl(folder / "cut.jsonl", QUESTIONS[:1])
    stored = {}
    for flags in ((), ("--keep-cut-endings",)):
        result = ragfleet("ask", str(path), "-c", "nw", "-m", MODELS[0], "--prompt", "study",
                          "--max-tokens", "60", *flags, "--wait", "--json", env=env,
                          timeout=900)
        assert result.returncode == 0, result.stderr
        batch_id = json.loads(result.stdout)["batch"]
        (stored[flags],) = batch_store.results(client, batch_id)
        # no --top-k: the model's catalog number of contexts (2 for SmolLM2)
        assert batch_store.get(client, batch_id)["params"]["contexts_per_model"] == {
            MODELS[0]: 2}
        assert stored[flags]["contexts_used"] == 2
    trimmed, raw = stored[()], stored[("--keep-cut-endings",)]
    assert trimmed["finish_reason"] == raw["finish_reason"] == "length"
    assert raw["cut_tail"] == "" and trimmed["cut_tail"].strip()
    # the stored pair is the generated text split at its last sentence (the two runs' texts
    # may differ: the second reuses the cached prompt prefix, whose sums round differently)
    whole = trimmed["answer"] + trimmed["cut_tail"]
    assert trim_to_last_sentence(whole) == (trimmed["answer"], trimmed["cut_tail"])
    assert trimmed["answer"].rstrip("\"')]*").endswith((".", "!", "?"))


@pytest.mark.parametrize("args, needle", [
    (["-m", "gpt-5"], "unknown model 'gpt-5'"),
    (["-m", "tinyllama-1.1b-chat"], "no running pool for tinyllama-1.1b-chat"),
    (["-m", MODELS[0], "--prompt", "nope"], "unknown prompt 'nope'"),
], ids=["unknown-model", "no-pool", "unknown-prompt"])
def test_bad_models_are_refused_before_anything_is_queued(fleet, args, needle):
    env, client, folder = fleet
    before = client.zcard("ragfleet:batches")
    path = write_jsonl(folder / "ok.jsonl", QUESTIONS[:1])
    result = ragfleet("ask", str(path), "-c", "nw", *args, env=env, timeout=60)
    assert_one_line_error(result, 2, needle)
    assert client.zcard("ragfleet:batches") == before


@pytest.mark.parametrize("content, collection, needle", [
    ('{"question": "ok?"}\n', "missing", "unknown collection 'missing'"),
    ("", "nw", "empty"),
    ('{"question": "ok?"\n', "nw", "not valid JSON"),
    ('{"id": "a", "question": "one?"}\n{"id": "a", "question": "two?"}\n', "nw", "duplicate id"),
], ids=["unknown-collection", "empty-file", "malformed", "duplicate-ids"])
def test_bad_questions_or_collection(fleet, content, collection, needle):
    env, client, folder = fleet
    before = client.zcard("ragfleet:batches")
    path = folder / "bad.jsonl"
    path.write_text(content)
    result = ragfleet("ask", str(path), "-c", collection, "-m", MODELS[0], env=env, timeout=60)
    assert_one_line_error(result, 2, needle)
    assert client.zcard("ragfleet:batches") == before
