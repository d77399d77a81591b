"""Every Redis key ragfleet writes, in one place. Celery's own keys are Celery's business."""

PREFIX = "ragfleet"

# Worker registry: one entry per live worker, refreshed by its heartbeat, expiring when it dies.
WORKER_PREFIX = f"{PREFIX}:worker:"


def worker_key(nodename: str) -> str:
    return f"{WORKER_PREFIX}{nodename}"


def worker_pattern() -> str:
    return f"{WORKER_PREFIX}*"
