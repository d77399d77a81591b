"""A model pool that takes turns (`ragfleet up` with several models on one host, or
`ragfleet worker --turns`): it consumes its queue only while shared.state.turns gives it the
host's turn, so each model generates alone, with every core, and its figures are its own.

A consumer bootstep: Celery starts it after the task consumer and ticks it on the worker's
event loop, the one thread that may add and cancel the consumer's queues. A task already
received when the pool stops consuming still runs; the turn is handed on after it."""

from __future__ import annotations

import logging
import time

import redis
from celery import bootsteps
from celery.worker import state as worker_state

from shared.state import turns
from shared.state.turns import PoolLoad

log = logging.getLogger(__name__)

TICK_S = 1.0


def held_tasks() -> int:
    """Tasks this worker has received and not finished (waiting for a pool slot or running)."""
    return len(set(worker_state.reserved_requests) | set(worker_state.active_requests))


def step(url: str, host: str, nodename: str, queue: str,
         task_limit_s: float) -> type[bootsteps.StartStopStep]:
    """The bootstep for one pool (Celery instantiates it with the consumer). task_limit_s: the
    longest a running task may take (its hard time limit)."""
    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)

    class TakeTurns(bootsteps.StartStopStep):
        requires = ("celery.worker.consumer.tasks:Tasks",)

        def __init__(self, c, **kwargs):
            self.consuming = False
            self.timer_entry = None
            super().__init__(c, **kwargs)

        def start(self, c):
            # Before the event loop's first consume() (also after a reconnection, which
            # rebuilds the consumer): take the queue out, so the pool fetches nothing until a
            # tick gives it the turn, and none if Redis does not answer that tick.
            c.cancel_task_queue(queue)
            self.consuming = False
            self.tick(c)
            self.timer_entry = c.timer.call_repeatedly(TICK_S, self.tick, (c,))

        def stop(self, c):
            if self.timer_entry is not None:
                self.timer_entry.cancel()
                self.timer_entry = None
            # no more ticks renew the lease, but a running task goes on (a warm shutdown, a
            # reconnection): keep the turn until it can have ended, so no other pool starts
            # beside it; shutdown() releases it as soon as it has
            try:
                if held_tasks():
                    turns.extend(client, host, nodename, task_limit_s + turns.LEASE_S)
            except redis.RedisError:
                pass

        def shutdown(self, c):
            self.stop(c)
            try:
                turns.release(client, host, nodename)  # the next pool need not wait the lease
            except redis.RedisError:
                pass

        def tick(self, c):
            try:
                load = PoolLoad(queued=client.llen(queue), in_flight=held_tasks())
                consume = turns.tick(client, host, nodename, load, time.time())
            except redis.RedisError as exc:
                log.warning("turns: Redis out of reach (%s); consuming stays %s", exc,
                            self.consuming)
                return
            if consume and not self.consuming:
                c.add_task_queue(queue)
                log.info("turns: this pool's turn on %s", host)
            elif not consume and self.consuming:
                c.cancel_task_queue(queue)
            self.consuming = consume

    return TakeTurns
