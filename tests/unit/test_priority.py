"""Idle priority is per thread: ingestion's threads take only idle cycles, the rest of the
worker keeps its normal priority."""

from __future__ import annotations

import sys
import threading

import pytest

from shared.retrieval.priority import idle_priority, is_idle_priority

pytestmark = [pytest.mark.unit,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SCHED_IDLE")]


def test_only_the_calling_thread_and_the_threads_it_starts_run_at_idle_priority():
    seen = {}

    def background():
        seen["took"] = idle_priority()
        seen["self"] = is_idle_priority()
        child = threading.Thread(target=lambda: seen.update(child=is_idle_priority()))
        child.start()
        child.join()

    thread = threading.Thread(target=background)
    thread.start()
    thread.join()
    assert seen == {"took": True, "self": True, "child": True}
    assert not is_idle_priority()  # this thread is untouched
