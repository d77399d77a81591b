"""A process record knows its process by the kernel's start ticks, not by a wall-clock start
time that moves when the machine's boot time is recomputed (a laptop or VM that resumes)."""

from __future__ import annotations

import os
import sys

import psutil
import pytest

from broker.processes import ProcessRecord, start_ticks

pytestmark = pytest.mark.unit

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def record(**changes) -> ProcessRecord:
    fields = {"name": "me", "pid": os.getpid(), "started": psutil.Process().create_time(),
              "argv": [], "log": "", "start_ticks": start_ticks(os.getpid())}
    return ProcessRecord(**{**fields, **changes})


@linux_only
def test_a_shifted_wall_clock_start_does_not_make_a_live_process_dead():
    assert record().alive()
    assert record(started=record().started - 120).alive()  # boot time recomputed on resume


@linux_only
def test_another_process_under_the_same_pid_is_not_ours():
    assert not record(start_ticks=record().start_ticks + 1).alive()


def test_records_written_before_start_ticks_use_the_wall_clock_start():
    assert record(start_ticks=None).alive()
    assert not record(start_ticks=None, started=record().started - 120).alive()
