"""Background processes that `ragfleet up` starts: spawn detached, record, check, stop.

A record keeps the pid with the process start time, so a pid reused by another program after a
reboot or crash is never mistaken for ours (and never signalled).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil


@dataclass
class ProcessRecord:
    name: str
    pid: int
    started: float  # psutil create_time of the process
    argv: list[str]
    log: str
    info: dict = field(default_factory=dict)

    def alive(self) -> bool:
        try:
            proc = psutil.Process(self.pid)
            return (
                abs(proc.create_time() - self.started) < 1.0
                and proc.status() != psutil.STATUS_ZOMBIE
            )
        except psutil.Error:
            return False

    def pids(self) -> list[int]:
        """The process and its children (a Celery prefork worker's pool processes)."""
        if not self.alive():
            return []
        try:
            children = psutil.Process(self.pid).children(recursive=True)
        except psutil.Error:
            children = []
        return [self.pid] + [c.pid for c in children]


def record_path(run_dir: Path, name: str) -> Path:
    return run_dir / f"{name}.json"


def save_record(run_dir: Path, record: ProcessRecord) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = record_path(run_dir, record.name).with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(record)), encoding="utf-8")
    tmp.replace(record_path(run_dir, record.name))  # atomic: readers never see half a record


def load_record(run_dir: Path, name: str) -> ProcessRecord | None:
    try:
        return ProcessRecord(**json.loads(record_path(run_dir, name).read_text(encoding="utf-8")))
    except (FileNotFoundError, json.JSONDecodeError, TypeError):
        return None


def load_records(run_dir: Path) -> list[ProcessRecord]:
    if not run_dir.is_dir():
        return []
    records = (load_record(run_dir, p.stem) for p in sorted(run_dir.glob("*.json")))
    return [r for r in records if r is not None]


def remove_record(run_dir: Path, name: str) -> None:
    record_path(run_dir, name).unlink(missing_ok=True)


def spawn(
    name: str, argv: list[str], log: Path, env: dict[str, str], info: dict | None = None
) -> ProcessRecord:
    """Start a process in its own session (it outlives the CLI; signals reach its whole group)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    started = psutil.Process(proc.pid).create_time()
    return ProcessRecord(name, proc.pid, started, argv, str(log), info or {})


def stop(record: ProcessRecord, grace_s: float, sig: int = signal.SIGTERM) -> bool:
    """Signal the process group, wait up to grace_s, then SIGKILL what is left.
    Returns True when it stopped within the grace period."""
    if not record.alive():
        return True
    try:
        os.killpg(record.pid, sig)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not record.alive():
            return True
        time.sleep(0.1)
    try:
        os.killpg(record.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return False


def tail(path: str | Path, lines: int = 5) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])
