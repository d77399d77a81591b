"""Celery tasks (thin adapters over `shared`) and the worker entry point."""
