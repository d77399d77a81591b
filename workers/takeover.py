"""A dead worker's tasks go back to their queues within seconds, not the visibility timeout.

Each worker records the delivery tags it receives (shared.state.inflight), and after each
registry heartbeat sweeps for the records of workers gone from the registry, putting their
tasks back through the broker (broker.recovery). Timing with the defaults (heartbeat every 5 s,
entries living 15 s, GRACE_BEATS 2): a dead worker's tasks are back in their queue within about
15 + 10 + 5 = 30 s of its death, at the head of the queue.
"""

from __future__ import annotations

import logging

import redis
from celery import Celery

from broker import connection, recovery
from shared.state import inflight

log = logging.getLogger(__name__)

# How many heartbeat intervals a worker missing from the registry keeps its tasks: enough for a
# live worker to publish again after a Redis restart that outlived its entry.
GRACE_BEATS = 2


def record_deliveries(url: str, nodename: str) -> None:
    """Record every task this worker receives (in its main process, as it arrives)."""
    from celery import signals

    client = connection.client(url, timeout_s=5)

    @signals.task_received.connect(weak=False)
    def _received(request, **_):
        try:
            inflight.hold(client, nodename, request.message.delivery_tag, request.id)
        except redis.exceptions.RedisError as exc:  # the visibility timeout stays the backstop
            log.warning("could not record task %s as held: %s", request.id, exc)


def reclaim_own(app: Celery, client: redis.Redis, nodename: str) -> None:
    """A worker starting under a name that already holds tasks succeeds one that died: put its
    tasks back before consuming (the sweep would not, the name being live again)."""
    tags = list(inflight.held(client, nodename))
    recovery.restore(app, tags)
    inflight.forget(client, nodename)
    if tags:
        log.warning("put back %d task(s) held by the previous %s", len(tags), nodename)


def release(client: redis.Redis, nodename: str) -> None:
    """A worker that stopped cleanly holds nothing (a warm shutdown finished its tasks, a cold
    one gave them back): drop its record, so no sweep looks at it."""
    try:
        inflight.forget(client, nodename)
    except redis.exceptions.RedisError as exc:
        log.warning("could not drop the record of %s: %s", nodename, exc)


def sweeper(app: Celery, nodename: str, interval_s: float):
    """What a worker does after each heartbeat: forget its own acknowledged tasks, and put
    back those of workers gone from the registry."""
    def sweep(client: redis.Redis) -> None:
        inflight.prune(client, nodename, recovery.UNACKED_KEY)
        for dead, tags in inflight.orphans(client, GRACE_BEATS * interval_s).items():
            recovery.restore(app, tags)
            inflight.forget(client, dead)
            if tags:
                log.warning("put back %d task(s) of %s, gone from the registry", len(tags), dead)

    return sweep
