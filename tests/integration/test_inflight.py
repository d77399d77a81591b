"""The records of held deliveries (shared.state.inflight) against a real Redis: which worker's
tasks may be put back, and when."""

from __future__ import annotations

import pytest

from shared.state import inflight, keys

pytestmark = pytest.mark.integration

UNACKED = "unacked"


def test_prune_forgets_only_what_the_broker_no_longer_holds(redis_client):
    inflight.hold(redis_client, "a@h", "tag-1", "task-1")
    inflight.hold(redis_client, "a@h", "tag-2", "task-2")
    redis_client.hset(UNACKED, "tag-2", "{}")  # tag-1 was acknowledged
    assert inflight.prune(redis_client, "a@h", UNACKED) == 1
    assert inflight.held(redis_client, "a@h") == {"tag-2": "task-2"}
    assert redis_client.ttl(keys.inflight_key("a@h")) > 0


def registered(client, *nodenames: str) -> None:
    """As a live worker's heartbeat publishes it (state.registry)."""
    for nodename in nodenames:
        client.set(keys.worker_key(nodename), "{}", ex=15)


def test_a_missing_worker_keeps_its_tasks_for_the_grace_then_loses_them(redis_client):
    inflight.hold(redis_client, "dead@h", "tag-1", "task-1")
    inflight.hold(redis_client, "live@h", "tag-2", "task-2")
    registered(redis_client, "live@h")
    assert inflight.orphans(redis_client, grace_s=10, now=100.0) == {}  # first seen missing
    assert inflight.orphans(redis_client, grace_s=10, now=109.0) == {}
    assert inflight.orphans(redis_client, grace_s=10, now=110.0) == {"dead@h": ["tag-1"]}
    inflight.forget(redis_client, "dead@h")
    assert inflight.orphans(redis_client, grace_s=10, now=200.0) == {}
    assert redis_client.hlen(keys.INFLIGHT_MISSING) == 0
    assert redis_client.smembers(keys.INFLIGHT_WORKERS) == {"live@h"}


def test_a_worker_seen_again_starts_its_grace_afresh(redis_client):
    inflight.hold(redis_client, "slow@h", "tag-1", "task-1")
    assert inflight.orphans(redis_client, grace_s=10, now=100.0) == {}
    # its heartbeat came back (a Redis restart had outlived its registry entry), then lapsed
    registered(redis_client, "slow@h")
    assert inflight.orphans(redis_client, grace_s=10, now=105.0) == {}
    redis_client.delete(keys.worker_key("slow@h"))
    assert inflight.orphans(redis_client, grace_s=10, now=112.0) == {}
    assert inflight.orphans(redis_client, grace_s=10, now=122.0) == {"slow@h": ["tag-1"]}


def test_a_task_delivered_again_to_a_live_worker_stays_with_it(redis_client):
    # the dead worker's prefork parent had requeued it, and another worker received it since
    inflight.hold(redis_client, "dead@h", "tag-1", "task-1")
    inflight.hold(redis_client, "dead@h", "tag-2", "task-2")
    inflight.hold(redis_client, "live@h", "tag-1", "task-1")
    registered(redis_client, "live@h")
    assert inflight.orphans(redis_client, grace_s=0, now=100.0) == {
        "dead@h": ["tag-2"]}
