"""The turn policy of a host's model pools (shared.state.turns) on a real Redis: one pool holds
the turn at a time, it passes to the pool that waited longest, a holder past its share yields,
and dead pools neither keep the turn nor hold up the line."""

from __future__ import annotations

import time

import pytest

from shared.state import keys, turns
from shared.state.turns import PoolLoad

HOST = "box"
WORK, BUSY, IDLE = PoolLoad(queued=3, in_flight=0), PoolLoad(queued=0, in_flight=1), \
    PoolLoad(queued=0, in_flight=0)


def alive(client, *nodenames):
    for name in nodenames:  # the registry entry a live worker's heartbeat keeps
        client.set(keys.worker_key(name), "{}", ex=60)


@pytest.fixture()
def client(redis_client):
    alive(redis_client, "a@box", "b@box", "c@box")
    return redis_client


def test_one_pool_holds_the_turn_until_its_work_is_done(client):
    now = 1000.0
    assert turns.tick(client, HOST, "a@box", WORK, now)
    assert not turns.tick(client, HOST, "b@box", WORK, now)  # waits in line
    # a's last task runs with its queue empty: a keeps the turn but takes nothing new
    assert not turns.tick(client, HOST, "a@box", BUSY, now + 1)
    assert turns.holder(client, HOST) == "a@box"
    assert not turns.tick(client, HOST, "b@box", WORK, now + 1)
    # done: the turn passes
    assert not turns.tick(client, HOST, "a@box", IDLE, now + 2)
    assert turns.holder(client, HOST) is None
    assert turns.tick(client, HOST, "b@box", WORK, now + 3)
    assert turns.holder(client, HOST) == "b@box"


def test_the_pool_that_waited_longest_goes_next(client):
    now = 1000.0
    assert turns.tick(client, HOST, "a@box", WORK, now)
    assert not turns.tick(client, HOST, "c@box", WORK, now + 1)
    assert not turns.tick(client, HOST, "b@box", WORK, now + 2)
    turns.tick(client, HOST, "a@box", IDLE, now + 3)
    assert not turns.tick(client, HOST, "b@box", WORK, now + 4)  # c came first
    assert turns.tick(client, HOST, "c@box", WORK, now + 4)


def test_a_holder_past_its_share_yields_to_a_waiting_pool(client):
    now = 1000.0
    assert turns.tick(client, HOST, "a@box", WORK, now)
    assert not turns.tick(client, HOST, "b@box", WORK, now + 1)
    assert turns.tick(client, HOST, "a@box", WORK, now + 100, turn_limit_s=300)
    # b has waited past the limit: a takes nothing new, finishes its running task, then yields
    assert not turns.tick(client, HOST, "a@box", PoolLoad(queued=3, in_flight=1), now + 302,
                          turn_limit_s=300)
    assert turns.holder(client, HOST) == "a@box"
    assert not turns.tick(client, HOST, "a@box", WORK, now + 303, turn_limit_s=300)
    assert turns.tick(client, HOST, "b@box", WORK, now + 303, turn_limit_s=300)
    # a is back in line, behind nobody else: its turn comes when b is done
    assert not turns.tick(client, HOST, "a@box", WORK, now + 304, turn_limit_s=300)
    turns.tick(client, HOST, "b@box", IDLE, now + 305)
    assert turns.tick(client, HOST, "a@box", WORK, now + 306)


def test_a_dead_holder_frees_the_turn_within_its_lease(client):
    assert turns.tick(client, HOST, "a@box", WORK, 1000.0, lease_s=0.3)
    assert not turns.tick(client, HOST, "b@box", WORK, 1000.0)
    time.sleep(0.5)  # a died: it renews no more
    assert turns.tick(client, HOST, "b@box", WORK, 1001.0)


def test_a_dead_waiter_does_not_hold_up_the_line(client):
    assert turns.tick(client, HOST, "a@box", WORK, 1000.0)
    assert not turns.tick(client, HOST, "b@box", WORK, 1001.0)
    client.delete(keys.worker_key("b@box"))  # b died waiting: its registry entry expired
    assert not turns.tick(client, HOST, "c@box", WORK, 1002.0)
    turns.tick(client, HOST, "a@box", IDLE, 1003.0)
    assert turns.tick(client, HOST, "c@box", WORK, 1004.0)


def test_a_pool_with_nothing_to_do_neither_takes_the_turn_nor_waits(client):
    assert not turns.tick(client, HOST, "a@box", IDLE, 1000.0)
    assert turns.holder(client, HOST) is None
    assert client.zcard(keys.turn_waiting_key(HOST)) == 0


def test_hosts_take_turns_apart(client):
    assert turns.tick(client, HOST, "a@box", WORK, 1000.0)
    alive(client, "a@other")
    assert turns.tick(client, "other", "a@other", WORK, 1000.0)


def test_release_hands_the_turn_on_at_once_and_only_its_own(client):
    assert turns.tick(client, HOST, "a@box", WORK, 1000.0)
    turns.release(client, HOST, "b@box")  # not b's to give
    assert turns.holder(client, HOST) == "a@box"
    turns.release(client, HOST, "a@box")
    assert turns.tick(client, HOST, "b@box", WORK, 1001.0)


def test_a_waiters_patience_counts_from_the_turn_it_waits_on(client):
    """c waited through a's whole turn: b, who goes next, still gets a full turn of its own."""
    assert turns.tick(client, HOST, "a@box", WORK, 0.0, turn_limit_s=300)
    assert not turns.tick(client, HOST, "b@box", WORK, 1.0, turn_limit_s=300)
    assert not turns.tick(client, HOST, "c@box", WORK, 2.0, turn_limit_s=300)
    assert not turns.tick(client, HOST, "a@box", WORK, 302.0, turn_limit_s=300)  # yields
    assert turns.tick(client, HOST, "b@box", WORK, 303.0, turn_limit_s=300)
    assert turns.tick(client, HOST, "b@box", WORK, 500.0, turn_limit_s=300)
    assert not turns.tick(client, HOST, "b@box", WORK, 604.0, turn_limit_s=300)


def test_a_lapsed_lease_is_not_renewed_over_its_new_holder(client):
    assert turns.tick(client, HOST, "a@box", WORK, 1000.0, lease_s=0.3)
    time.sleep(0.5)  # a paused past its lease
    assert turns.tick(client, HOST, "b@box", WORK, 1001.0)
    assert not turns.extend(client, HOST, "a@box", 30)
    assert not turns.tick(client, HOST, "a@box", BUSY, 1002.0)
    assert turns.holder(client, HOST) == "b@box"


def test_a_pool_not_yet_in_the_registry_keeps_its_place_in_line(client):
    client.delete(keys.worker_key("c@box"))  # c's first tick comes before its first heartbeat
    assert turns.tick(client, HOST, "a@box", WORK, 1000.0)
    assert not turns.tick(client, HOST, "c@box", WORK, 1001.0)
    assert not turns.tick(client, HOST, "c@box", WORK, 1002.0)
    assert client.zscore(keys.turn_waiting_key(HOST), "c@box") == 1001.0
