"""Flower, started by `ragfleet up --flower`: always behind basic auth, on loopback by default.

Credentials come from settings, or are generated once and kept (mode 0600) in the data
directory. They reach Flower through its environment, never its command line (visible in ps).
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
import urllib.error
import urllib.request
from base64 import b64encode

from broker import processes
from broker.embedded_redis import free_port
from shared.config import Settings
from shared.errors import RagfleetError

RECORD_NAME = "flower"


def credentials(settings: Settings) -> tuple[str, str]:
    if settings.flower_password:
        return settings.flower_user, settings.flower_password
    path = settings.data_path / "flower-auth.json"
    if path.exists():
        saved = json.loads(path.read_text(encoding="utf-8"))
        return saved["user"], saved["password"]
    user, password = settings.flower_user, secrets.token_urlsafe(18)
    processes.write_private(path, json.dumps({"user": user, "password": password}))
    return user, password


def start(settings: Settings, redis_url: str, timeout_s: float = 60.0) -> processes.ProcessRecord:
    current = processes.load_record(settings.run_dir, RECORD_NAME)
    if current and current.alive():
        return current
    user, password = credentials(settings)
    port = settings.flower_port or free_port(settings.flower_address)
    host = "127.0.0.1" if settings.flower_address == "0.0.0.0" else settings.flower_address
    url = f"http://{host}:{port}"
    argv = [sys.executable, "-m", "celery", "-A", "broker.app:app", "flower",
            f"--address={settings.flower_address}", f"--port={port}"]
    # secrets through the environment: a command line is visible to every user in `ps`
    env = {**os.environ, "FLOWER_BASIC_AUTH": f"{user}:{password}",
           "CELERY_BROKER_URL": redis_url, "RAGFLEET_DATA_DIR": str(settings.data_path)}
    record = processes.spawn(RECORD_NAME, argv, settings.log_dir / "flower.log", env,
                             info={"url": url, "user": user})
    processes.save_record(settings.run_dir, record)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not record.alive():
            raise RagfleetError(f"Flower exited at start: {processes.tail(record.log, 1)}")
        if api_get(url, "/api/workers", user, password) is not None:
            return record
        time.sleep(0.5)
    raise RagfleetError(f"Flower did not answer at {url} within {timeout_s:.0f} s")


def api_get(url: str, path: str, user: str, password: str):
    """GET Flower's HTTP API with basic auth; None when it does not answer (yet)."""
    token = b64encode(f"{user}:{password}".encode()).decode()
    request = urllib.request.Request(url + path, headers={"Authorization": f"Basic {token}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def describe(settings: Settings) -> dict | None:
    record = processes.load_record(settings.run_dir, RECORD_NAME)
    if not record or not record.alive():
        return None
    described = {"url": record.info["url"], "user": record.info["user"], "pid": record.pid}
    if not settings.flower_password:
        described["password_file"] = str(settings.data_path / "flower-auth.json")
    return described
