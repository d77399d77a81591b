"""Background processes that `ragfleet up` starts: spawn detached, record, check, stop.

A record keeps the pid with the process start time, so a pid reused by another program after a
reboot or crash is never mistaken for ours (and never signalled). Records may hold secrets (the
embedded Redis's URL carries its password): they are written mode 0600 in a 0700 directory.
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


def private_dir(path: Path) -> Path:
    """Create the directory (and its parents) readable by this user only: mode 0700. An existing
    one of ours loses its group and other permissions."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_uid == os.getuid() and path.stat().st_mode & 0o077:
        path.chmod(0o700)
    return path


def write_private(path: Path, text: str) -> None:
    """Write a file only this user can read (mode 0600, also when it existed with another mode),
    atomically: readers never see half of it."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # O_CREAT's mode does not apply to a file left by an earlier run
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fd = -1
            fh.write(text)
    finally:
        if fd >= 0:
            os.close(fd)
    tmp.replace(path)


def record_path(run_dir: Path, name: str) -> Path:
    return run_dir / f"{name}.json"


def save_record(run_dir: Path, record: ProcessRecord) -> None:
    private_dir(run_dir)
    write_private(record_path(run_dir, record.name), json.dumps(asdict(record)))


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
