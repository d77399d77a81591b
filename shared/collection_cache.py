"""A worker's loaded collections: each loaded once, kept until a newer version is current."""

from __future__ import annotations

import threading

import redis

from shared import collection_store
from shared.collection_store import Manifest, UnknownCollection
from shared.indexes import SearchIndex


class CollectionCache:
    def __init__(self, client: redis.Redis):
        self.client = client
        self._loaded: dict[str, tuple[Manifest, SearchIndex]] = {}
        self._lock = threading.Lock()
        self.loads = 0  # how many times an index was read from Redis (for tests and stats)

    def get(self, name: str, version: int | None = None) -> tuple[Manifest, SearchIndex]:
        """The current version, or the given one (a batch keeps the version it started on)."""
        current = collection_store.current_version(self.client, name)  # one HGET per query
        if current is None:
            self._loaded.pop(name, None)
            raise UnknownCollection(f"unknown collection {name!r}")
        version = version or current
        with self._lock:
            cached = self._loaded.get(name)
            if cached and cached[0].version == version:
                return cached
            loaded = collection_store.load(self.client, name, version)
            self._loaded[name] = loaded
            self.loads += 1
            return loaded
