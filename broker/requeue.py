"""A task whose pool process died goes back to the head of its queue, to run next.

With late acknowledgement and reject-on-worker-lost, a prefork parent requeues the task of a
child that died (killed, out of memory). kombu's Redis transport requeues a rejected message
with LPUSH, the end producers publish to, so the question waits behind everything queued since:
in a 100-question batch, minutes. Here it goes back where the visibility timeout's restore puts
messages (RPUSH, the end consumers pop from). This is what Request.reject, Message.reject and
the Redis QoS.reject do together, with that one change (kombu and Celery are pinned; the
reliability tests would see a change in them).
"""

from __future__ import annotations

import logging

from celery.worker.request import Request
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual

log = logging.getLogger(__name__)


class RequeueAtHead(Request):
    def reject(self, requeue=False):
        qos = self.message.channel.qos
        if not (requeue and not self.acknowledged and isinstance(qos, kombu_redis.QoS)):
            return super().reject(requeue=requeue)
        tag = self.message.delivery_tag
        try:
            qos.restore_by_tag(tag, leftmost=False)  # watched: moved from unacked to the head
            virtual.QoS.ack(qos, tag)  # the channel forgets the delivery (no Redis call)
        except self._connection_errors as exc:  # unacknowledged still: restored later
            log.critical("could not requeue %s: %r", tag, exc)
        self.message._state = "REJECTED"
        self.acknowledged = True
        self.send_event("task-rejected", requeue=True)
