"""Collections in Redis: versioned chunks and indexes any worker on any machine can load.

A version's parts (manifest, chunks, FAISS bytes, BM25 tokens: opaque bytes here, encoded and
decoded by shared.retrieval.indexes) are written under their own keys; the collection's pointer
moves to it only when all are stored, in one transaction, so a failed or killed ingestion leaves
the previous version current. The version before the current
one is kept for readers still holding it; older ones are deleted.

Version numbers are never reused, not even after a delete: workers cache a version by name and
number, and must not mistake a re-created collection's version for the deleted one's.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field

import redis

from shared.errors import RagfleetError, UsageError
from shared.state import keys

PARTS = ("manifest", "chunks", "faiss", "bm25")
INDEX_PARTS = PARTS[1:]
TORCH_FP32 = "torch-fp32"  # the embedder of manifests that do not name theirs
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class UnknownCollection(UsageError):
    pass


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise UsageError(
            f"bad collection name {name!r}: use 1-64 letters, digits, '.', '_' or '-'"
        )
    return name


@dataclass
class Manifest:
    name: str
    version: int
    documents: list[dict]  # name, sha256, pages, chunks, bytes
    chunks: int
    embedding_model: str
    dim: int
    chunk_size: int
    chunk_overlap: int
    created_at: float = field(default_factory=time.time)
    # seconds per phase of the ingestion that made this version (extract, chunk, embed, index)
    timings_s: dict = field(default_factory=dict)
    # the embedder that built the vectors, "backend-precision:model" (onnx-fp32:all-MiniLM-L6-v2);
    # queries embed with one whose vectors match it. None: a manifest from before it was recorded,
    # whose vectors torch made in fp32.
    embedder: str | None = None

    def embedder_id(self) -> str:
        return self.embedder or f"{TORCH_FP32}:{self.embedding_model}"

    def to_json(self) -> str:
        return json.dumps(self.__dict__)


def current_version(client: redis.Redis, name: str) -> int | None:
    value = client.hget(keys.collection_key(name), "version")
    return int(value) if value is not None else None


def manifest(client: redis.Redis, name: str, version: int | None = None) -> Manifest:
    version = version if version is not None else current_version(client, name)
    raw = client.get(keys.collection_version_key(name, version, "manifest")) if version else None
    if raw is None:
        raise UnknownCollection(f"unknown collection {name!r}")
    return Manifest(**json.loads(raw))


def list_collections(client: redis.Redis) -> list[Manifest]:
    names = sorted(n.decode() if isinstance(n, bytes) else n
                   for n in client.smembers(keys.COLLECTIONS_SET))
    found = []
    for name in names:
        try:
            found.append(manifest(client, name))
        except UnknownCollection:
            continue
    return found


def load_parts(client: redis.Redis, name: str,
               version: int | None = None) -> tuple[Manifest, dict[str, bytes]]:
    """The current (or given) version's manifest and its index parts, as stored."""
    meta = manifest(client, name, version)
    raw = client.mget([keys.collection_version_key(name, meta.version, p) for p in INDEX_PARTS])
    if any(r is None for r in raw):
        raise UnknownCollection(f"collection {name!r} version {meta.version} is incomplete")
    return meta, dict(zip(INDEX_PARTS, raw))


def load_part(client: redis.Redis, name: str, part: str,
              version: int | None = None) -> tuple[Manifest, bytes]:
    """One index part of the current (or given) version, without reading the others."""
    meta = manifest(client, name, version)
    raw = client.get(keys.collection_version_key(name, meta.version, part))
    if raw is None:
        raise UnknownCollection(f"collection {name!r} version {meta.version} is incomplete")
    return meta, raw


# Redis refuses a value over 512 MB (proto-max-bulk-len). The FAISS part reaches it first: 384
# float32 dimensions are 1,536 bytes a chunk, so about 349,000 chunks in one collection version.
MAX_PART_BYTES = 512 * 1024 * 1024


class CollectionTooLarge(RagfleetError):
    pass


def check_part_sizes(name: str, parts: dict[str, bytes], chunks: int) -> None:
    """Refuse, before anything is written, a version with a part Redis cannot hold in one value,
    saying where the ceiling lies for this collection."""
    part, value = max(parts.items(), key=lambda item: len(item[1]))
    if len(value) > MAX_PART_BYTES:
        per_chunk = len(value) / max(chunks, 1)
        raise CollectionTooLarge(
            f"collection {name!r} is too large for Redis: its {part} part would be "
            f"{len(value) / 2**20:,.1f} MiB, over Redis's limit of "
            f"{MAX_PART_BYTES / 2**20:,.1f} MiB for one value (about "
            f"{MAX_PART_BYTES / per_chunk:,.0f} chunks; this version has {chunks:,}); "
            "split the documents into several collections")


class BaseChanged(RagfleetError):
    """Another ingestion made a new version current after this one read its base: saving would
    drop that version's documents. The ingestion builds again on the new base."""


def save(client: redis.Redis, meta: Manifest, parts: dict[str, bytes], base: int | None) -> int:
    """Store a new version (its manifest and index parts) and make it current, only if the
    current version is still `base`, the one it was built on (None: no collection yet).
    Compare-and-set: the ingestion lock can be lost (expired while Redis was unreachable, taken
    over by a duplicate delivery), and then two ingestions build on the same base; the second
    to save gets BaseChanged instead of silently dropping the first's documents. Returns the new
    version's number, which is also set on `meta`."""
    if set(parts) != set(INDEX_PARTS):
        raise ValueError(f"a collection version has the parts {INDEX_PARTS}, not {sorted(parts)}")
    name = meta.name
    check_part_sizes(name, parts, meta.chunks)
    number = int(client.incr(keys.collection_version_counter(name)))
    meta.version = number
    stored = {"manifest": meta.to_json().encode(), **parts}
    try:
        # one SET each: a single MSET of several large parts could pass Redis's 1 GB query buffer
        with client.pipeline(transaction=False) as pipe:
            for part, value in stored.items():
                pipe.set(keys.collection_version_key(name, number, part), value)
            pipe.execute()
        with client.pipeline(transaction=True) as pipe:
            pipe.watch(keys.collection_key(name))  # EXEC fails if another save lands meanwhile
            current = pipe.hget(keys.collection_key(name), "version")
            current = int(current) if current is not None else None
            if current != base:
                raise BaseChanged(f"collection {name!r} changed from version {base} to "
                                  f"{current} while this ingestion ran")
            pipe.multi()
            pipe.hset(keys.collection_key(name), mapping={"version": number,
                                                          "updated_at": time.time()})
            pipe.sadd(keys.COLLECTIONS_SET, name)
            try:
                pipe.execute()
            except redis.exceptions.WatchError:
                raise BaseChanged(f"collection {name!r} changed while this ingestion saved "
                                  f"version {number}") from None
    except BaseException:
        # The transaction may have run before the error (a time limit while its reply was read):
        # then the new version is current and must stay.
        if current_version(client, name) != number:
            _delete_version(client, name, number)
        raise
    _prune(client, name, keep={number, base})
    return number


def delete(client: redis.Redis, name: str) -> int | None:
    """Delete a collection's pointer and every stored part of its versions, even of incomplete
    ones. Returns the version that was current. The version counter stays (see above)."""
    current = current_version(client, name)
    versions = _versions(client, name) | ({current} if current else set())
    if current is None and not versions:
        raise UnknownCollection(f"unknown collection {name!r}")
    with client.pipeline(transaction=True) as pipe:
        pipe.delete(keys.collection_key(name))
        pipe.srem(keys.COLLECTIONS_SET, name)
        for v in versions:
            pipe.delete(*[keys.collection_version_key(name, v, p) for p in PARTS])
        pipe.execute()
    return current


def _versions(client: redis.Redis, name: str) -> set[int]:
    """Versions with any stored part (a version missing its manifest included)."""
    pattern = keys.collection_version_key(name, 0, "*").replace(":v0:", ":v*:")
    found = set()
    for key in client.scan_iter(match=pattern, count=500):
        key = key.decode() if isinstance(key, bytes) else key
        m = re.search(rf":v(\d+):({'|'.join(PARTS)})$", key)
        if m:
            found.add(int(m.group(1)))
    return found


def _delete_version(client: redis.Redis, name: str, version: int) -> None:
    client.delete(*[keys.collection_version_key(name, version, p) for p in PARTS])


def _prune(client: redis.Redis, name: str, keep: set[int | None]) -> None:
    for version in _versions(client, name) - keep:
        _delete_version(client, name, version)
