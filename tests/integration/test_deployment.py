"""docker-compose.yml, validated by Debian's docker-compose (no Docker engine runs here)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
import yaml

from shared.config import Settings
from tests.helpers import ROOT

pytestmark = pytest.mark.integration

SECRETS = {"REDIS_PASSWORD": "test-redis-secret", "FLOWER_PASSWORD": "test-flower-secret"}


def compose(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    binary = shutil.which("docker-compose")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("docker-compose is not installed (make test installs Debian's package)")
        pytest.skip("docker-compose is not installed")
    clean = {k: v for k, v in os.environ.items() if k not in SECRETS}
    return subprocess.run([binary, "-f", str(ROOT / "docker-compose.yml"), *args],
                          env={**clean, **env}, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def config() -> dict:
    result = compose("config", env=SECRETS)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_secrets_are_required():
    result = compose("config", "-q", env={})
    assert result.returncode != 0
    assert "REDIS_PASSWORD" in result.stderr


def test_redis_is_persistent_protected_and_never_evicts(config):
    redis = config["services"]["redis"]
    command = " ".join(redis["command"]) if isinstance(redis["command"], list) else redis["command"]
    for setting in ("--appendonly yes", "--appendfsync everysec", "--maxmemory-policy noeviction",
                    "--maxmemory 2gb"):
        assert setting in command
    assert "test-redis-secret" in command
    assert "ports" not in redis  # not published by default
    assert any(v.startswith("redis-data:") for v in redis["volumes"])


def test_redis_user_has_a_password_and_no_config_debug_module_or_acl(config):
    command = config["services"]["redis"]["command"]
    assert isinstance(command, list)  # no shell: a password with spaces stays one argument
    user = command[command.index("--user") + 1:]
    rules = user[:next((i for i, a in enumerate(user) if a.startswith("--")), len(user))]
    assert rules[:3] == ["default", "on", ">test-redis-secret"]
    assert "+@all" in rules
    for denied in ("-config", "-debug", "-module", "-acl", "-replicaof", "-slaveof"):
        assert denied in rules[rules.index("+@all"):]  # after +@all, so they win
    assert "--requirepass" not in command  # the user line is the one password


def test_redis_maxmemory_follows_the_setting():
    result = compose("config", env={**SECRETS, "RAGFLEET_REDIS_MAXMEMORY": "512mb"})
    assert result.returncode == 0, result.stderr
    command = yaml.safe_load(result.stdout)["services"]["redis"]["command"]
    assert command[command.index("--maxmemory") + 1] == "512mb"


def test_flower_has_auth_and_listens_on_loopback(config):
    flower = config["services"]["flower"]
    assert flower["environment"]["FLOWER_BASIC_AUTH"] == "ragfleet:test-flower-secret"
    assert all(p["host_ip"] == "127.0.0.1" if isinstance(p, dict) else p.startswith("127.0.0.1:")
               for p in flower["ports"])


def test_one_pool_per_bundled_model_with_health_and_grace(config):
    services = config["services"]
    limit = Settings().llm_task_time_limit_s
    for model in ("smollm2-135m", "gemma3-270m"):
        pool = services[f"worker-{model}"]
        assert pool["command"][:4] == ["ragfleet", "worker", "--model", model]
        assert f"inspect ping -d {model}@$$HOSTNAME" in " ".join(pool["healthcheck"]["test"])
        grace = int(re.match(r"(\d+)s", str(pool["stop_grace_period"])).group(1))
        assert grace > limit  # a stopping pool finishes its task instead of being killed
        assert any(v.endswith(":/app/models:rw") or v.endswith(":/app/models")
                   for v in _volumes(pool))
        assert "test-redis-secret" in pool["environment"]["REDIS_URL"]
    cpu = services["worker-cpu"]
    assert "--cpu" in cpu["command"] and "healthcheck" in cpu
    assert services["producer"]["profiles"] == ["tools"]  # a one-off, not a daemon
    images = {s.get("image") for name, s in services.items() if name != "redis"}
    assert images == {"ragfleet:latest"}  # one image for producer and workers


def _volumes(service: dict) -> list[str]:
    out = []
    for v in service.get("volumes", []):
        if isinstance(v, dict):
            out.append(f"{v.get('source')}:{v['target']}" + ("" if not v.get("read_only") else ":ro"))
        else:
            out.append(v)
    return out


def test_a_pool_for_any_catalog_model_by_name():
    result = compose("--profile", "any-model", "config",
                     env={**SECRETS, "RAGFLEET_MODEL": "tinyllama-1.1b-chat"})
    assert result.returncode == 0, result.stderr
    pool = yaml.safe_load(result.stdout)["services"]["worker-model"]
    assert pool["command"] == ["ragfleet", "worker", "--model", "tinyllama-1.1b-chat",
                               "--name", "tinyllama-1.1b-chat@%h"]
    assert "tinyllama-1.1b-chat@$$HOSTNAME" in " ".join(pool["healthcheck"]["test"])
    assert pool["profiles"] == ["any-model"]
