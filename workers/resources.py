"""What a worker process loads once and keeps: its Redis client, its collection cache and the
scoring embedder's memory of texts."""

from __future__ import annotations

from functools import lru_cache

import redis

from broker import connection
from broker.app import app
from shared.pipeline.ingestion import index_cache
from shared.retrieval.embedding_memo import Remembering
from shared.retrieval.embeddings import get_embedder
from shared.retrieval.indexes import SearchIndex
from shared.state.collection_cache import CollectionCache


@lru_cache(maxsize=1)
def store() -> redis.Redis:
    """ragfleet's own data, bytes in and bytes out. Patient: a task that meets a Redis restart
    waits for it instead of failing."""
    return connection.client(app.conf.broker_url, timeout_s=30, patient=True, decode=False)


@lru_cache(maxsize=1)
def collections() -> CollectionCache[SearchIndex]:
    """Loaded collection versions, kept until a newer one is current."""
    return index_cache(store())


@lru_cache(maxsize=1)
def scoring_embedder() -> Remembering:
    """The exact embedder, remembering texts: a batch's contexts are scored once per model."""
    return Remembering(get_embedder())
