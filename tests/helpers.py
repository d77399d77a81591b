"""Helpers for tests that run the real CLI and real worker processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a fresh shell: no inherited ragfleet or Redis settings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("RAGFLEET_") and k != "REDIS_URL"}
    env.update(extra)
    return env


def ragfleet(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the real `ragfleet` command line in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "producer.cli", *args],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )


def start_worker(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    out = log.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "producer.cli", "worker", *args],
        env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
    )


def wait_for(predicate, timeout: float, interval: float = 0.25, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def assert_one_line_error(result: subprocess.CompletedProcess, code: int, *needles: str) -> None:
    """A user error: the expected exit code, one line on stderr, no traceback."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
