"""`ragfleet questions generate` against the session fleet's real pools: SmolLM2's pool writes
items from passages of the ingested Northwind plan, the filters run, and the file written is an
ordinary questions file that `ask` takes, each item traceable to its page. Errors are one line."""

from __future__ import annotations

import json

from shared.pipeline.questions import read_questions
from shared.state import generations
from tests.e2e.batch_data import MODELS
from tests.helpers import assert_one_line_error, ragfleet


def test_a_pool_writes_a_questions_file_from_the_collection(fleet, tmp_path):
    env, client, _ = fleet
    out = tmp_path / "generated.jsonl"
    done = ragfleet("questions", "generate", "nw", "-m", MODELS[0], "-n", "3", "--seed", "1",
                    "-o", str(out), "--wait", "--json", env=env, timeout=900)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    job = generations.get(client, report["job"])
    assert report["passages"] == len(job["passages"]) == 5  # 3 x 1.6, the filters drop some
    assert report["pending"] == 0
    # every passage was written (or failed) once, and each item is kept or dropped for a reason
    items = generations.items(client, report["job"])
    assert sorted(i["index"] for i in items) == list(range(5))
    assert report["kept"] + sum(report["dropped"].values()) == 5
    assert all(i.get("raw") is not None or i.get("error") for i in items)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == report["kept"] <= 3
    questions = read_questions(out)  # `ask` takes it as it is (an empty file too: checked below)
    pages = {(p["document"], p["page"]) for p in job["passages"]}
    for row, question in zip(rows, questions):
        made = row["generated_by"]
        assert made["model"] == MODELS[0] and made["prompt"] == "generate@v1"
        assert (made["passage"]["document"], made["passage"]["page"]) in pages
        assert question.sources == (f"{made['passage']['document']}#page="
                                    f"{made['passage']['page']}",)


def test_collect_writes_the_file_again_and_refuses_to_overwrite(fleet, tmp_path):
    env, client, _ = fleet
    first = ragfleet("questions", "generate", "nw", "-m", MODELS[0], "-n", "1",
                     "-o", str(tmp_path / "a.jsonl"), "--wait", "--json", env=env, timeout=600)
    assert first.returncode == 0, first.stderr
    job = json.loads(first.stdout)["job"]
    again = ragfleet("questions", "collect", job, "-o", str(tmp_path / "a.jsonl"), env=env)
    assert_one_line_error(again, 2, "exists", "--force")
    forced = ragfleet("questions", "collect", job, "-o", str(tmp_path / "a.jsonl"), "--force",
                      "--json", env=env)
    assert forced.returncode == 0, forced.stderr
    assert json.loads(forced.stdout)["kept"] == json.loads(first.stdout)["kept"]


def test_generation_errors_are_one_line(fleet, tmp_path):
    env, _, _ = fleet
    cases = [
        (["nw", "-m", "smollm2-135m", "-n", "0"], 2, "-n must be at least 1"),
        (["nope", "-m", "smollm2-135m"], 2, "unknown collection 'nope'"),
        (["nw", "-m", "no-such-model"], 2, "no-such-model"),
    ]
    for args, code, needle in cases:
        result = ragfleet("questions", "generate", *args, "-o", str(tmp_path / "x.jsonl"),
                          env=env, timeout=60)
        assert_one_line_error(result, code, needle)
    assert not (tmp_path / "x.jsonl").exists()
    collect = ragfleet("questions", "collect", "g-unknown", "-o", str(tmp_path / "y.jsonl"),
                       env=env, timeout=60)
    assert_one_line_error(collect, 2, "unknown generation job 'g-unknown'")


def test_a_model_without_a_pool_is_refused_before_anything_is_sent(fleet, tmp_path):
    env, client, _ = fleet
    before = set(client.keys("ragfleet:generation:*"))
    # a catalog model with no pool in this fleet (the 1.5B's entry is shipped)
    result = ragfleet("questions", "generate", "nw", "-m", "qwen2.5-coder-1.5b",
                      "-o", str(tmp_path / "z.jsonl"), env=env, timeout=60)
    assert_one_line_error(result, 2, "no running pool for qwen2.5-coder-1.5b")
    assert set(client.keys("ragfleet:generation:*")) == before
