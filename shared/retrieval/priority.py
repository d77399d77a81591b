"""Background work that never slows the model pools: the calling thread runs only on cycles
a core would otherwise idle (Linux SCHED_IDLE). Ingestion's reading and embedding threads use
it, so an ingestion on a host whose pools are answering takes what they leave, and every core
when they are idle. Elsewhere (no SCHED_IDLE, or refused) it does nothing."""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


def idle_priority() -> bool:
    """Put the calling thread (not the process) on idle priority; True when it took. Threads
    the caller starts afterwards inherit it."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # 0: the calling thread
        return True
    except (AttributeError, OSError) as exc:
        log.debug("idle priority unavailable: %s", exc)
        return False


def is_idle_priority() -> bool:
    try:
        return os.sched_getscheduler(0) == os.SCHED_IDLE
    except (AttributeError, OSError):
        return False
