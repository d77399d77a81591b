"""ragfleet's state in Redis: every key (in `keys`) and every read and write of batches,
collections and their per-process cache, ingestion jobs, uploaded documents, the worker registry,
locks, each task's count of starts (deliveries) and the fleet's published limits (fleet_limits).
Nothing outside this package touches a raw key. Imports only config and errors."""
