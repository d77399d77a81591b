import os
from pathlib import Path

import pytest

from shared.config import Settings, get_settings, load_settings
from shared.errors import UsageError

pytestmark = pytest.mark.unit


def test_env_prefix_and_redis_url(monkeypatch, tmp_path):
    monkeypatch.setenv("RAGFLEET_DATA_DIR", str(tmp_path / "fleet"))
    monkeypatch.setenv("REDIS_URL", "redis://example:6380/2")
    monkeypatch.setenv("RAGFLEET_CORES", "8")
    settings = Settings()
    assert settings.data_path == (tmp_path / "fleet").resolve()
    assert settings.redis_url == "redis://example:6380/2"
    assert settings.cores == 8
    assert settings.run_dir == settings.data_path / "run"


def test_defaults_are_embedded_and_local(monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("RAGFLEET_DATA_DIR", raising=False)
    settings = Settings()
    assert settings.redis_url is None
    assert settings.data_dir == Path(".ragfleet")
    assert settings.redis_bind == "127.0.0.1"
    assert settings.catalog_path.name == "catalog.toml"


def test_visibility_timeout_must_exceed_time_limits():
    with pytest.raises(ValueError, match="VISIBILITY_TIMEOUT"):
        Settings(llm_task_time_limit_s=600, visibility_timeout_s=600)
    assert Settings(llm_task_time_limit_s=600, cpu_task_time_limit_s=60,
                    visibility_timeout_s=601).visibility_timeout == 601


def test_killed_task_comes_back_within_its_limit_plus_two_minutes():
    settings = Settings()
    assert settings.visibility_timeout > settings.longest_task_s
    assert settings.visibility_timeout + settings.restore_sweep_s <= settings.llm_task_time_limit_s + 120
    short = Settings(llm_task_time_limit_s=20, cpu_task_time_limit_s=30)
    assert short.visibility_timeout == 90


def test_redis_beyond_loopback_needs_password():
    with pytest.raises(ValueError, match="PASSWORD"):
        Settings(redis_bind="0.0.0.0")
    assert Settings(redis_bind="0.0.0.0", redis_password="s3cret").redis_password == "s3cret"


def test_bad_setting_is_a_usage_error(monkeypatch):
    monkeypatch.setenv("RAGFLEET_CORES", "many")
    get_settings.cache_clear()
    try:
        with pytest.raises(UsageError, match="cores"):
            load_settings()
    finally:
        get_settings.cache_clear()


def test_redis_maxmemory_is_checked_and_defaults_to_a_quarter_of_memory(monkeypatch):
    with pytest.raises(ValueError, match="RAGFLEET_REDIS_MAXMEMORY"):
        Settings(redis_maxmemory="lots")
    assert Settings(redis_maxmemory="2GB").redis_maxmemory == "2gb"
    assert Settings(redis_maxmemory="0").redis_maxmemory == "0"  # Redis: no limit
    monkeypatch.delenv("RAGFLEET_REDIS_MAXMEMORY", raising=False)
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    default = Settings().redis_maxmemory
    assert default.endswith("mb")
    assert int(default[:-2]) == max(256, total // 4 // 2**20)


def test_private_urls_are_refused_unless_allowed(monkeypatch):
    monkeypatch.delenv("RAGFLEET_ALLOW_PRIVATE_URLS", raising=False)
    assert Settings().allow_private_urls is False
    monkeypatch.setenv("RAGFLEET_ALLOW_PRIVATE_URLS", "1")
    assert Settings().allow_private_urls is True
