"""The fleet through the real `ragfleet` command line: up, status --json, down, and its errors."""

from __future__ import annotations

import json
import os

import psutil
import pytest

from tests.helpers import assert_one_line_error, clean_env, ragfleet

pytestmark = pytest.mark.e2e


def test_help_works_with_redis_down():
    env = clean_env(REDIS_URL="redis://127.0.0.1:1/0")
    for args in (["--help"], ["up", "--help"], ["status", "--help"], ["worker", "--help"]):
        result = ragfleet(*args, env=env, timeout=60)
        assert result.returncode == 0, result.stderr
        assert "Usage:" in result.stdout


def test_unreachable_redis_exits_69(tmp_path):
    env = clean_env(REDIS_URL="redis://127.0.0.1:1/0", RAGFLEET_DATA_DIR=str(tmp_path))
    assert_one_line_error(ragfleet("status", env=env), 69, "cannot reach Redis")
    assert_one_line_error(ragfleet("worker", "--cpu", env=env), 69, "cannot reach Redis")


def test_status_without_a_running_fleet_exits_69(tmp_path):
    env = clean_env(RAGFLEET_DATA_DIR=str(tmp_path))
    assert_one_line_error(ragfleet("status", "--json", env=env), 69, "ragfleet up")


def test_unknown_model_is_a_usage_error(tmp_path):
    env = clean_env(RAGFLEET_DATA_DIR=str(tmp_path))
    assert_one_line_error(ragfleet("up", "--model", "gpt-5", env=env), 2, "unknown model 'gpt-5'")
    assert not (tmp_path / "run" / "redis.json").exists()  # nothing was started


def test_missing_model_file_is_a_usage_error(tmp_path):
    env = clean_env(RAGFLEET_DATA_DIR=str(tmp_path), RAGFLEET_MODELS_DIR=str(tmp_path / "models"))
    result = ragfleet("up", "--model", "tinyllama-1.1b-chat", env=env)
    assert_one_line_error(result, 2, "tinyllama-1.1b-chat", "not downloaded")


def test_corrupt_model_file_is_a_usage_error(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "tinyllama-1.1b-chat-v1.0.Q5_K_M.gguf").write_bytes(b"\0" * 1024)
    env = clean_env(RAGFLEET_DATA_DIR=str(tmp_path), RAGFLEET_MODELS_DIR=str(models))
    result = ragfleet("up", "--model", "tinyllama-1.1b-chat", env=env)
    assert_one_line_error(result, 2, "not a GGUF file")


def test_unwritable_data_dir_is_a_usage_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = clean_env(RAGFLEET_DATA_DIR=str(blocker / "fleet"))
    assert_one_line_error(ragfleet("up", "--model", "smollm2-135m", env=env), 2, "not writable")


def test_models_lists_availability(tmp_path):
    env = clean_env(RAGFLEET_MODELS_DIR=str(tmp_path))
    result = ragfleet("models", "--json", env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    models = {m["name"]: m for m in json.loads(result.stdout)["models"]}
    assert models["smollm2-135m"]["availability"] == "present"
    assert models["smollm2-135m"]["size"] > 90_000_000
    assert models["tinyllama-1.1b-chat"]["availability"] == "not downloaded"
    assert models["mistral-7b-instruct"]["size"] is None


@pytest.fixture()
def fleet_env(tmp_path):
    env = clean_env(RAGFLEET_DATA_DIR=str(tmp_path / "fleet"))
    yield env
    ragfleet("down", env=env, timeout=120)


def test_up_status_down(fleet_env):
    up = ragfleet("up", "--model", "smollm2-135m", "--json", env=fleet_env)
    assert up.returncode == 0, up.stderr
    state = json.loads(up.stdout)
    assert state["redis"]["embedded"] and state["redis"]["healthy"]
    assert state["redis"]["url"].startswith("redis://:***@127.0.0.1:")  # a password, not shown

    status = ragfleet("status", "--json", env=fleet_env, timeout=60)
    assert status.returncode == 0, status.stderr
    pools = {p["queue"]: p for p in json.loads(status.stdout)["pools"]}
    assert set(pools) == {"cpu", "llm.smollm2-135m"}
    smol = pools["llm.smollm2-135m"]
    assert smol["model"] == "smollm2-135m"
    assert smol["workers"] == 1 and smol["state"] == "ready"
    assert smol["backend"] == "cpu" and smol["model_file"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert smol["queued"] == 0
    # the thread budget: one model pool on this machine gets every core
    assert smol["n_threads"] == os.cpu_count()
    pids = smol["pids"] + pools["cpu"]["pids"]
    assert len(smol["pids"]) == 2  # the worker and its one pool process
    assert all(psutil.pid_exists(pid) for pid in pids)

    again = ragfleet("up", "--model", "smollm2-135m", "--json", env=fleet_env)
    assert again.returncode == 0, again.stderr
    again_pools = {p["queue"]: p for p in json.loads(again.stdout)["pools"]}
    assert again_pools["llm.smollm2-135m"]["pids"][0] == smol["pids"][0]  # not started twice

    human = ragfleet("status", env=fleet_env, timeout=60)
    assert "llm.smollm2-135m" in human.stdout and "ready" in human.stdout

    down = ragfleet("down", "--json", env=fleet_env, timeout=120)
    assert down.returncode == 0, down.stderr
    assert set(json.loads(down.stdout)["stopped"]) >= {"pool-cpu", "pool-smollm2-135m", "redis"}
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert_one_line_error(ragfleet("status", env=fleet_env), 69, "not running")
