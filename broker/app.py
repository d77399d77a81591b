"""The Celery app. Nothing connects at import: `configure` sets the broker URL at run time.

Settings for long tasks: late acknowledgement, prefetch 1 and reject-on-worker-lost, so a killed
worker's task is delivered again; JSON only, never pickle; a visibility timeout longer than
any task time limit, so a task still running is not delivered a second time.
"""

from __future__ import annotations

from celery import Celery

from broker.queues import ANSWER_TASK, CPU_QUEUE, GENERATE_TASK, TASK_ROUTES
from shared.config import Settings

app = Celery(
    "ragfleet", include=["workers.llm_tasks", "workers.cpu_tasks", "workers.batch_tasks"]
)

app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    result_accept_content=["json"],
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_default_queue=CPU_QUEUE,
    task_routes=TASK_ROUTES,
    task_track_started=True,
    task_send_sent_event=True,
    worker_send_task_events=True,
    result_expires=7 * 24 * 3600,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    timezone="UTC",
)


def configure(redis_url: str, settings: Settings) -> Celery:
    """Point the app at a Redis and apply the time limits; call before sending or working."""
    app.conf.update(
        broker_url=redis_url,
        result_backend=redis_url,
        broker_transport_options={"visibility_timeout": settings.visibility_timeout_s},
        result_backend_transport_options={"visibility_timeout": settings.visibility_timeout_s},
        task_time_limit=settings.cpu_task_time_limit_s,
        task_soft_time_limit=max(1, settings.cpu_task_time_limit_s - 30),
        # Model tasks: the soft limit raises inside generation so the result is stored as
        # failed with its reason; the hard limit kills a stuck pool process.
        task_annotations={
            name: {"time_limit": settings.llm_task_time_limit_s,
                   "soft_time_limit": max(1, settings.llm_task_time_limit_s - 15)}
            for name in (GENERATE_TASK, ANSWER_TASK)
        },
    )
    return app
