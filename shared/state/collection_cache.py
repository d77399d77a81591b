"""A worker's loaded collections: each loaded once, kept until a newer version is current.

The cache stores whatever `build` makes of a version's parts (the retrieval package's
SearchIndex), so state does not depend on how an index is searched."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

import redis

from shared.state import collection_store
from shared.state.collection_store import Manifest, UnknownCollection

Index = TypeVar("Index")


class CollectionCache(Generic[Index]):
    def __init__(self, client: redis.Redis, build: Callable[[dict[str, bytes]], Index]):
        self.client = client
        self.build = build
        self._loaded: dict[str, tuple[Manifest, Index]] = {}
        self._lock = threading.Lock()
        self.loads = 0  # how many times an index was read from Redis (for tests and stats)

    def get(self, name: str, version: int | None = None) -> tuple[Manifest, Index]:
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
            meta, parts = collection_store.load_parts(self.client, name, version)
            loaded = (meta, self.build(parts))
            self._loaded[name] = loaded
            self.loads += 1
            return loaded
