"""Background processes that `ragfleet up` starts: spawn detached, record, check, stop.

A record keeps the pid with the process start time, so a pid reused by another program after a
reboot or crash is never mistaken for ours (and never signalled). On Linux the start time is the
kernel's count of clock ticks since boot, which never moves: the wall-clock start time psutil
derives from it shifts when the machine's boot time is recomputed (a suspended laptop or a
paused virtual machine that resumes), and a running Redis was once taken for a dead one so.
Records may hold secrets (the embedded Redis's URL carries its password): they are written mode
0600 in a 0700 directory.
"""

from __future__ import annotations

import contextlib
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
    start_ticks: int | None = None  # Linux: clock ticks from boot to the process's start

    def alive(self) -> bool:
        try:
            proc = psutil.Process(self.pid)
            ticks = start_ticks(self.pid)
            same = (ticks == self.start_ticks if ticks is not None and self.start_ticks
                    is not None else abs(proc.create_time() - self.started) < 1.0)
            return same and proc.status() != psutil.STATUS_ZOMBIE
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


def start_ticks(pid: int) -> int | None:
    """When the process started, in clock ticks since boot (/proc/PID/stat, field 22), or None
    where there is no /proc."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            stat = fh.read()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()  # the name, in parentheses, may hold spaces
    try:
        return int(fields[19])  # field 22 counts from the pid; these start at field 3
    except (IndexError, ValueError):
        return None


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
    return ProcessRecord(name, proc.pid, started, argv, str(log), info or {},
                         start_ticks=start_ticks(proc.pid))


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


COLD_SHUTDOWN_S = 15.0


def stop_workers(records: list[ProcessRecord], grace_s: float, cold_s: float = COLD_SHUTDOWN_S,
                 on_wait=None, wait_note_after_s: float = 5.0) -> dict[str, str]:
    """Stop Celery workers without losing the tasks they are running.

    Warm: SIGTERM to each worker's main process only, never its group: Celery stops taking
    tasks, gives the prefetched ones back to the queue, lets its pool processes finish the
    running ones (their results stored and acknowledged), then exits. What still runs after
    grace_s gets SIGQUIT, Celery's cold shutdown: running tasks are cancelled and their messages
    given back to the queue as the worker exits. What still runs cold_s later is SIGKILLed with
    its process group; its unacknowledged tasks come back after the visibility timeout.

    on_wait(names): called once with the workers still stopping after wait_note_after_s.
    Returns how each one stopped: 'warm', 'cold' or 'killed' (or 'gone': it was not running)."""
    how = {r.name: "gone" for r in records if not r.alive()}
    live = [r for r in records if r.alive()]
    members = {r.name: _members(r) for r in live}
    for record in live:
        _signal(record, signal.SIGTERM)
    start = time.monotonic()
    left = _wait(live, start + min(grace_s, wait_note_after_s))
    if left and on_wait and grace_s > wait_note_after_s:
        on_wait([r.name for r in left])
    left = _wait(left, start + grace_s)
    how.update({r.name: "warm" for r in live if r not in left})
    for record in left:
        _signal(record, signal.SIGQUIT)
    killed = _wait(left, time.monotonic() + cold_s)
    how.update({r.name: "cold" for r in left if r not in killed})
    for record in killed:
        how[record.name] = "killed"
        if record.alive():
            with _suppress_gone():
                os.killpg(record.pid, signal.SIGKILL)
    for record in live:  # pool processes that outlived their worker
        for proc in members[record.name]:
            with _suppress_gone():
                if proc.is_running():
                    proc.kill()
    _wait(killed, time.monotonic() + 10)  # SIGKILL is not instant: return once they are gone
    return how


def _members(record: ProcessRecord) -> list[psutil.Process]:
    try:
        return psutil.Process(record.pid).children(recursive=True)
    except psutil.Error:
        return []


def _signal(record: ProcessRecord, sig: int) -> None:
    if record.alive():  # the same process we started, not a reused pid
        with _suppress_gone():
            os.kill(record.pid, sig)


def _wait(records: list[ProcessRecord], deadline: float) -> list[ProcessRecord]:
    """Wait until each record's process has exited or the deadline passed; returns those left."""
    left = [r for r in records if r.alive()]
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = [r for r in left if r.alive()]
    return left


def _suppress_gone():
    return contextlib.suppress(ProcessLookupError, psutil.Error)


def tail(path: str | Path, lines: int = 5) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])
