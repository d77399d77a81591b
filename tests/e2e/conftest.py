"""End-to-end fixtures: one real fleet (`ragfleet up`: embedded Redis, cpu pool, SmolLM2 and
Gemma pools) with the real Northwind PDF ingested and one finished batch, shared by the session."""

from __future__ import annotations

import json

import pytest

from broker import connection
from tests.e2e.batch_data import MODELS, QUESTIONS, ask, write_jsonl
from tests.helpers import clean_env, ragfleet
from tests.pdf_samples import STANDARD_PDF


@pytest.fixture(scope="session")
def fleet(tmp_path_factory):
    folder = tmp_path_factory.mktemp("batch-fleet")
    env = clean_env(RAGFLEET_DATA_DIR=str(folder / "data"))
    up = ragfleet("up", "--model", MODELS[0], "--model", MODELS[1], "--json", env=env, timeout=400)
    assert up.returncode == 0, up.stderr
    url = json.loads((folder / "data" / "run" / "redis.json").read_text())["info"]["url"]
    try:
        ingest = ragfleet("ingest", str(STANDARD_PDF), "-c", "nw", "--wait", env=env, timeout=600)
        assert ingest.returncode == 0, ingest.stderr
        env["REDIS_URL_FOR_TESTS"] = url  # for sending a task by hand
        yield env, connection.client(url), folder
    finally:
        ragfleet("down", env=env, timeout=120)


@pytest.fixture(scope="session")
def finished(fleet):
    env, client, folder = fleet
    result = ask(env, write_jsonl(folder / "q.jsonl", QUESTIONS), "--wait", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    out = ragfleet("results", summary["batch"], "--format", "json", env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    return summary, json.loads(out.stdout)


