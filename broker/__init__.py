"""The Celery app, queue names and routing, Redis settings and key prefixes, embedded Redis."""
