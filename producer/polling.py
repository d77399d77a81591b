"""Waiting for work the workers do: poll its record until it is finished."""

from __future__ import annotations

import time
from collections.abc import Callable

from shared.errors import RagfleetError


def until_finished(fetch: Callable[[], dict], finished: Callable[[dict], bool], what: str,
                   on_progress=None, poll_s: float = 0.5,
                   timeout_s: float | None = None) -> dict:
    deadline = time.monotonic() + timeout_s if timeout_s else None
    while True:
        record = fetch()
        if on_progress:
            on_progress(record)
        if finished(record):
            return record
        if deadline and time.monotonic() > deadline:
            raise RagfleetError(f"{what} not finished after {timeout_s:.0f} s")
        time.sleep(poll_s)
