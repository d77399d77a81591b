"""A Redis lock that stays held while its holder works, and frees itself soon after the holder
dies (a SIGKILLed worker must not block the redelivered task for the whole time limit)."""

from __future__ import annotations

import contextlib
import threading

import redis

from shared.errors import RagfleetError
from shared.state import keys


@contextlib.contextmanager
def held(client: redis.Redis, key: str, owner: str, ttl_s: float = 30.0, wait_s: float = 3600.0):
    """Hold `key` as `owner`. A lock left by an earlier attempt of the same owner (a job whose
    worker was killed and which is now delivered again) is taken over at once: that attempt is
    dead, and waiting for its lock to expire would only delay the job."""
    # thread_local=False: the keep-alive thread renews the token the caller acquired
    lock = client.lock(key, timeout=ttl_s, blocking_timeout=wait_s, thread_local=False)
    current = client.get(key)
    if current is not None and (current.decode() if isinstance(current, bytes) else current) == owner:
        client.delete(key)
    if not lock.acquire(token=owner):
        raise RagfleetError(f"could not take the lock {key} within {wait_s:.0f} s")
    stop = threading.Event()

    def keep_alive():
        while not stop.wait(ttl_s / 3):
            try:
                lock.reacquire()
            except redis.exceptions.RedisError:
                pass  # Redis hiccup: try again next round; the TTL covers a few misses

    thread = threading.Thread(target=keep_alive, name=f"lock:{key}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        with contextlib.suppress(redis.exceptions.LockError, redis.exceptions.RedisError):
            lock.release()


def collection_held(client: redis.Redis, collection: str, owner: str):
    """Hold a collection's ingestion lock: one ingestion builds on its current version at a time."""
    return held(client, keys.collection_lock(collection), owner)
