"""Documents in, a new collection version out: extract, chunk, embed (new chunks only), index,
store. Re-ingesting a document with the same content changes nothing; one with the same name
and new content replaces its chunks."""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import redis

from shared.errors import RagfleetError, UsageError
from shared.retrieval import embeddings, indexes
from shared.retrieval.chunking import chunk_pages
from shared.retrieval.pdf import iter_pages
from shared.retrieval.priority import idle_priority
from shared.state import collection_store
from shared.state.collection_cache import CollectionCache
from shared.state.collection_store import Manifest

log = logging.getLogger(__name__)


@dataclass
class SourceDocument:
    name: str
    data: bytes


@dataclass
class Version:
    """A collection version in memory: its manifest, chunks, vectors and BM25 tokens."""

    manifest: Manifest
    chunks: list
    vectors: np.ndarray
    tokens: list[list[str]]


def load_index(client: redis.Redis, collection: str,
               version: int | None = None) -> tuple[Manifest, indexes.SearchIndex]:
    """The current (or given) version, ready to search."""
    meta, parts = collection_store.load_parts(client, collection, version)
    return meta, indexes.decode(parts)


def index_cache(client: redis.Redis) -> CollectionCache[indexes.SearchIndex]:
    """A per-process cache of searchable collection versions."""
    return CollectionCache(client, indexes.decode)


def current_version(client: redis.Redis, collection: str) -> Version | None:
    """The current version with its vectors, to build the next one on; None for a new one."""
    if collection_store.current_version(client, collection) is None:
        return None
    meta, index = load_index(client, collection)
    return Version(meta, index.chunks, index.vectors, index.tokens)


@dataclass
class IngestReport:
    collection: str
    version: int
    changed: bool
    documents: list[dict]
    chunks: int
    timings_s: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return self.__dict__


SAVE_ATTEMPTS = 3  # builds on a base that another ingestion replaced meanwhile, then gives up


def ingest(client: redis.Redis, collection: str, sources: list[SourceDocument],
           chunk_size: int | None, chunk_overlap: int | None, embedder,
           defaults: tuple[int, int], progress=lambda stage, done, total: None,
           threads: Callable[[], int] | None = None,
           embedder_kind: str | None = None) -> IngestReport:
    """The sources into a new version of the collection, built on its current one.
    threads: the cores the embedder may use now (see Embedder.embed). embedder_kind: the
    embedder a new collection is built with (the `embedder` setting; None: `embedder`'s).
    When another ingestion saved a version meanwhile (a lost lock), builds again on it."""
    args = (client, collection, sources, chunk_size, chunk_overlap, embedder, defaults,
            progress, threads, embedder_kind)
    for _ in range(SAVE_ATTEMPTS - 1):
        try:
            return _ingest_on_current(*args)
        except collection_store.BaseChanged as exc:
            log.warning("%s; building again on the new version", exc)
    return _ingest_on_current(*args)  # the last attempt's BaseChanged fails the job


def _ingest_on_current(client: redis.Redis, collection: str, sources: list[SourceDocument],
                       chunk_size: int | None, chunk_overlap: int | None, embedder,
                       defaults: tuple[int, int], progress, threads,
                       embedder_kind: str | None) -> IngestReport:
    timings: dict[str, float] = {}
    base = current_version(client, collection)
    size, overlap = _chunk_settings(base, chunk_size, chunk_overlap, defaults)
    embedder = _collection_embedder(base, embedder, embedder_kind)

    known = {d["sha256"]: d for d in base.manifest.documents} if base else {}
    added, report_docs = [], []
    for source in sources:
        digest = hashlib.sha256(source.data).hexdigest()
        if digest in known or any(a[1] == digest for a in added):
            report_docs.append({"name": source.name, "status": "unchanged",
                                "pages": known.get(digest, {}).get("pages")})
            continue
        added.append((source, digest))
    if not added:
        return IngestReport(collection, base.manifest.version, False, report_docs,
                            base.manifest.chunks, timings)

    overlapped = _extract_while_embedding([source for source, _ in added], size, overlap,
                                          embedder, progress, threads)
    timings.update(overlapped.timings)
    new_chunks, vectors = overlapped.chunks, overlapped.vectors
    new_docs = []
    chunks_of = Counter(c.document for c in new_chunks)
    replaced = {source.name for source, _ in added}
    for source, digest in added:
        known_name = base and any(d["name"] == source.name for d in base.manifest.documents)
        status = "replaced" if known_name else "added"
        doc = {"name": source.name, "sha256": digest, "pages": overlapped.pages[source.name],
               "chunks": chunks_of[source.name],
               "bytes": len(source.data)}
        new_docs.append(doc)
        report_docs.append({**doc, "status": status})

    clock = time.perf_counter()
    kept = [i for i, c in enumerate(base.chunks) if c.document not in replaced] if base else []
    chunks = [base.chunks[i] for i in kept] + new_chunks if base else new_chunks
    all_vectors = np.vstack([base.vectors[kept], vectors]) if base and kept else vectors
    tokens = (([base.tokens[i] for i in kept] if base else [])
              + [indexes.tokenize(c.text) for c in new_chunks])
    documents = [d for d in (base.manifest.documents if base else [])
                 if d["name"] not in replaced] + new_docs
    manifest = Manifest(name=collection, version=0, documents=documents, chunks=len(chunks),
                        embedding_model=embedder.name, dim=int(all_vectors.shape[1]),
                        chunk_size=size, chunk_overlap=overlap,
                        embedder=embeddings.embedder_id(embedder))
    timings["index"] = time.perf_counter() - clock
    manifest.timings_s = dict(timings)  # the store phase is the report's only

    clock = time.perf_counter()
    version = collection_store.save(client, manifest,
                                    indexes.encode(chunks, all_vectors, tokens),
                                    base=base.manifest.version if base else None)
    timings["store"] = time.perf_counter() - clock
    return IngestReport(collection, version, True, report_docs, len(chunks), timings)


EMBED_WINDOW = 256  # chunks embedded together while the next pages are read


@dataclass
class Extracted:
    chunks: list
    vectors: np.ndarray
    pages: dict[str, int]  # pages per document
    timings: dict[str, float]


def _extract_while_embedding(sources: list[SourceDocument], size: int, overlap: int, embedder,
                             progress, threads) -> Extracted:
    """Read the documents' pages on a thread and embed their chunks as they come, windows of
    EMBED_WINDOW: extraction (pypdf, pure Python) is no longer a serial phase in front of
    embedding, whose runtime releases the GIL. Chunks are split per page, so chunking page by
    page gives the same chunks. `extract` and `embed` in the timings overlap; `extract_and_embed`
    is the time of both together."""
    import queue
    import threading

    started = time.perf_counter()
    pending: queue.Queue = queue.Queue(maxsize=4 * EMBED_WINDOW)
    pages: dict[str, int] = {}
    failure: list[BaseException] = []
    timings = {"extract": 0.0, "embed": 0.0}  # chunking is part of extract, page by page
    stop = threading.Event()

    def read_all() -> None:
        idle_priority()  # pypdf takes only what the model pools leave (see retrieval.priority)
        busy = 0.0  # reading and chunking only, not the waits on a full queue
        try:
            for source in sources:
                count = 0
                clock = time.perf_counter()
                for page in iter_pages(source.data, source.name, progress=lambda done, total:
                                       progress("extract", done, total)):
                    new = chunk_pages(source.name, [page], size, overlap)
                    busy += time.perf_counter() - clock
                    if stop.is_set():
                        return  # the embedding side failed: read nothing more
                    count += 1
                    for chunk in new:
                        pending.put(chunk)
                    clock = time.perf_counter()
                busy += time.perf_counter() - clock  # the checks after the last page
                pages[source.name] = count
        except BaseException as exc:  # re-raised on the embedding side
            failure.append(exc)
        finally:
            timings["extract"] = busy
            pending.put(None)

    reader = threading.Thread(target=read_all, name="extract", daemon=True)
    reader.start()
    chunks: list = []
    parts: list[np.ndarray] = []
    try:
        finished = False
        while not finished:
            window = [pending.get()]
            while window[-1] is not None and len(window) < EMBED_WINDOW:
                try:
                    window.append(pending.get(timeout=0.05 if len(window) > 1 else None))
                except queue.Empty:
                    break  # embed what is there rather than wait for a slow page
            finished = window[-1] is None
            window = [c for c in window if c is not None]
            if failure:
                raise failure[0]
            if not window:
                continue
            clock = time.perf_counter()
            done, total = len(chunks), len(chunks) + len(window)  # the total grows as pages come
            parts.append(embedder.embed(
                [c.text for c in window], threads=threads,
                progress=lambda n, _total, done=done, total=total: progress("embed", done + n,
                                                                            total)))
            timings["embed"] += time.perf_counter() - clock
            chunks += window
    finally:
        stop.set()
        while reader.is_alive():  # unblock a reader waiting on a full queue
            try:
                pending.get_nowait()
            except queue.Empty:
                reader.join(0.05)
    if failure:
        raise failure[0]
    dim = getattr(embedder, "dim", None) or (parts[0].shape[1] if parts else 0)
    vectors = np.vstack(parts) if parts else np.zeros((0, dim), dtype=np.float32)
    timings["extract_and_embed"] = time.perf_counter() - started
    return Extracted(chunks, vectors, pages, timings)


def _collection_embedder(base: Version | None, embedder, kind: str | None):
    """The embedder of this ingestion: a collection's new chunks are embedded as its stored ones
    were (by `embedder` when its vectors match, fp32 on either backend); a new collection's with
    `kind` when given, falling back to `embedder` when that kind cannot be had here (an int8
    that is unavailable: never fail an ingestion for a faster embedder)."""
    if base is not None:
        return embeddings.matching(embedder, base.manifest.embedder_id())
    if kind is None:
        return embedder
    try:
        return embeddings.matching(embedder, f"{kind}:{embedder.name}")
    except RagfleetError as exc:
        log.warning("embedding with %s instead: %s", embeddings.embedder_id(embedder), exc)
        return embedder


def _chunk_settings(base: Version | None, size: int | None, overlap: int | None,
                    defaults: tuple[int, int]) -> tuple[int, int]:
    """A collection keeps the chunking it was created with: mixed chunk sizes would rank unfairly."""
    if base:
        have = (base.manifest.chunk_size, base.manifest.chunk_overlap)
        wanted = (size or have[0], overlap if overlap is not None else have[1])
        if wanted != have:
            raise UsageError(
                f"collection {base.manifest.name!r} uses chunk size {have[0]} and overlap {have[1]}; "
                "delete it to re-chunk with other settings"
            )
        return have
    size = size or defaults[0]
    overlap = defaults[1] if overlap is None else overlap
    if overlap >= size:
        raise UsageError(f"chunk overlap {overlap} must be smaller than chunk size {size}")
    return size, overlap
