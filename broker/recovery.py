"""Putting a dead worker's unacknowledged tasks back in their queues, at once.

kombu's Redis transport keeps each delivered, unacknowledged message in the `unacked` hash by
delivery tag, and gives it back when the visibility timeout has passed. `restore` does the same
for chosen tags now, through kombu's own restore (one transaction per tag, watched: two workers
restoring the same tag push it once). The message goes back at the head of its queue, with
its task id, so its deliveries keep counting toward the poison limit. Which tags belong to dead
workers is shared.state.inflight's business.
"""

from __future__ import annotations

from celery import Celery

# The broker's hash of unacknowledged messages (kombu's default name, set explicitly in the
# transport options so that the records and the broker agree).
UNACKED_KEY = "unacked"


def restore(app: Celery, tags: list[str]) -> None:
    """Put the messages of these delivery tags back in their queues; a tag no longer
    unacknowledged (its task was acknowledged meanwhile) is skipped."""
    if not tags:
        return
    with app.connection_for_write() as conn:
        qos = conn.default_channel.qos
        for tag in tags:
            qos.restore_by_tag(tag)
