"""ragfleet's state in Redis: every key (in `keys`) and every read and write of batches,
collections and their per-process cache, ingestion jobs, uploaded documents, the worker registry,
locks, each task's count of starts (deliveries) and the fleet's published limits (fleet_limits).
Nothing outside this package touches a raw key. Imports only config and errors."""

import redis

# Redis out of reach (a restart, a partition) rather than a wrong request: what a step must not
# record as the pair's failure, but hand back so that the task is run again once Redis is back.
UNREACHABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
