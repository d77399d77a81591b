"""The base of ragfleet's tasks: each start is counted, so a poison message (a task whose worker
dies every time it runs it) is settled as failed instead of delivered forever. The decision is
shared.pipeline.poison's; a task class says how its work is settled (give_up)."""

from __future__ import annotations

import logging

from celery.exceptions import Reject

from broker.app import app
from shared.config import get_settings
from shared.pipeline import poison
from shared.state import UNREACHABLE
from workers import resources

log = logging.getLogger(__name__)


class CountedTask(app.Task):
    # a task whose pool process died runs next, not after everything queued since
    Request = "broker.requeue:RequeueAtHead"

    def __call__(self, *args, **kwargs):
        # runs where the task runs (the prefork child, or a thread of a batching pool), after
        # Celery pushed the request: self.request.id is the message's task id
        task_id = self.request.id
        if not task_id:  # called directly, outside a worker
            return super().__call__(*args, **kwargs)
        try:
            reason = poison.admit(resources.store(), task_id, get_settings().max_deliveries)
            if reason is not None:
                log.error("%s[%s] is not run again: %s", self.name, task_id, reason)
                self.give_up(args, reason)
                return None  # acknowledged: it is not delivered again
            # as Celery's tracer does for a task without __call__: its full request stays
            # current (Task.__call__ would push one without the id; a bound task reads the id)
            return self.run(*args, **kwargs)
        except UNREACHABLE as exc:
            # Redis stayed out of reach through the patient client's retries (a partition, a
            # long restart): the work is not failed, which would turn an answer already
            # computed into an error, but handed back to the queue to run again; if the queue
            # cannot be reached either, the message stays unacknowledged until a live worker
            # or the visibility timeout gives it back.
            log.warning("%s[%s] goes back to its queue: Redis out of reach (%s)",
                        self.name, task_id, exc)
            raise Reject(f"Redis out of reach: {exc}", requeue=True) from exc

    def after_return(self, status, retval, task_id, args, kwargs, einfo):
        """The task returned (or its hard time limit was handled): it will not come back."""
        if task_id:
            poison.returned(resources.store(), task_id)

    def give_up(self, args: tuple, reason: str) -> None:
        """Settle the task's work as failed with `reason`, without running it."""
