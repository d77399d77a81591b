"""Producer side of ingestion: check inputs, upload local files, enqueue the job, wait for it."""

from __future__ import annotations

from pathlib import Path

import redis

from broker.queues import INGEST_TASK
from producer import polling
from shared.config import Settings
from shared.errors import UsageError
from shared.retrieval.download import check_url
from shared.retrieval.pdf import BadDocument
from shared.state import jobs, uploads
from shared.state.collection_store import check_name


def source_spec(item: str, settings: Settings) -> tuple[dict, bytes | None]:
    """A URL spec (downloaded by the worker) or a local file's spec with its bytes."""
    if "://" in item:
        check_url(item)
        return {"name": Path(item.split("?", 1)[0].rstrip("/")).name or item, "url": item}, None
    path = Path(item)
    if not path.exists():
        raise UsageError(f"{item}: no such file")
    if not path.is_file():
        raise UsageError(f"{item}: not a file")
    size = path.stat().st_size
    if size == 0:
        raise BadDocument(f"{path.name}: the file is empty")
    if size > settings.max_document_bytes:
        raise BadDocument(f"{path.name}: {size} bytes is over the limit of "
                          f"{settings.max_document_bytes} (RAGFLEET_MAX_DOCUMENT_BYTES)")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{item}: cannot read: {exc.strerror}") from None
    if b"%PDF-" not in data[:1024]:
        raise BadDocument(f"{path.name}: not a PDF (no %PDF- header)")
    return {"name": path.name, "bytes": size}, data


def submit(app, client: redis.Redis, settings: Settings, items: list[str], collection: str,
           chunk_size: int | None, chunk_overlap: int | None) -> str:
    """Validate every input first, then upload and enqueue; returns the job id."""
    check_name(collection)
    if chunk_size is not None and chunk_overlap is not None and chunk_overlap >= chunk_size:
        raise UsageError(f"--chunk-overlap {chunk_overlap} must be smaller than "
                         f"--chunk-size {chunk_size}")
    specs = [source_spec(item, settings) for item in items]
    names = [s["name"] for s, _ in specs]
    if len(set(names)) != len(names):
        raise UsageError("two inputs have the same file name; a collection names documents by file")
    job_id = jobs.new_id()
    uploads.save(client, job_id, {i: data for i, (_, data) in enumerate(specs) if data is not None},
                 settings.upload_ttl_s)
    jobs.create(client, job_id, collection, [s for s, _ in specs],
                {"chunk_size": chunk_size, "chunk_overlap": chunk_overlap,
                 "max_bytes": settings.max_document_bytes})
    app.send_task(INGEST_TASK, args=[job_id], task_id=f"ingest-{job_id}")
    return job_id


def wait(client: redis.Redis, job_id: str, on_progress=None, poll_s: float = 0.5,
         timeout_s: float | None = None) -> dict:
    return polling.until_finished(lambda: jobs.get(client, job_id),
                                  lambda j: j["state"] in jobs.FINISHED,
                                  f"ingestion job {job_id}", on_progress, poll_s, timeout_s)
