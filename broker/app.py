"""The Celery app. Nothing connects at import: `configure` sets the broker URL at run time.

Settings for long tasks: late acknowledgement, prefetch 1 and reject-on-worker-lost, so a killed
worker's task is delivered again; JSON only, never pickle; a visibility timeout longer than
any task time limit, so a task still running is not delivered a second time.
"""

from __future__ import annotations

from celery import Celery

from broker.queues import ANSWER_TASK, CPU_QUEUE, GENERATE_TASK, JUDGE_TASK, TASK_ROUTES
from broker.recovery import UNACKED_KEY
from shared.config import Settings, soft_limit

app = Celery("ragfleet", include=["workers.cpu_tasks", "workers.llm_tasks"])

STATIC_CONF = dict(
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
app.conf.update(STATIC_CONF)


def configure(redis_url: str, settings: Settings, target: Celery | None = None) -> Celery:
    """Point the workers' app (or `target`) at a Redis and apply the time limits."""
    target = target or app
    transport = {
        "visibility_timeout": settings.visibility_timeout,
        # look for dead workers' tasks every restore_sweep_s (kombu's default is ~100 s)
        "unacked_restore_interval": settings.restore_sweep_s,
        "unacked_restore_throttle": 1,
        "unacked_key": UNACKED_KEY,  # read by broker.recovery's records of live deliveries
    }
    target.conf.update(
        broker_url=redis_url,
        result_backend=redis_url,
        broker_transport_options=transport,
        result_backend_transport_options={"visibility_timeout": settings.visibility_timeout},
        # a task published while Redis restarts is retried for about two minutes
        task_publish_retry_policy={"max_retries": 40, "interval_start": 0.5,
                                   "interval_step": 0.5, "interval_max": 3},
        task_time_limit=settings.cpu_task_time_limit_s,
        task_soft_time_limit=soft_limit(settings.cpu_task_time_limit_s),
        # Model tasks: the soft limit raises inside generation so the result is stored as
        # failed with its reason; the hard limit kills a stuck pool process.
        task_annotations={
            task: {"time_limit": settings.llm_task_time_limit_s,
                   "soft_time_limit": soft_limit(settings.llm_task_time_limit_s)}
            for task in (ANSWER_TASK, JUDGE_TASK, GENERATE_TASK)
        },
    )
    return target


def sender(redis_url: str, settings: Settings) -> Celery:
    """A fresh app for a producer to send tasks by name: its own connections, so a process that
    talks to two fleets (a test, a script) never sends to the wrong Redis."""
    fresh = Celery("ragfleet-producer", set_as_current=False)
    fresh.conf.update(STATIC_CONF)
    return configure(redis_url, settings, target=fresh)
