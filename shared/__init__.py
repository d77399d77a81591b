"""ragfleet's library: everything the producer and workers share. Never imports Celery."""
