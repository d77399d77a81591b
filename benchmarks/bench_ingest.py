"""Ingestion speed on the Northwind PDFs: pages and chunks per second, split by phase
(extract, chunk, embed, index, store), against a real Redis.

    .venv/bin/python -m benchmarks.bench_ingest
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import redis

from benchmarks import machine
from broker import embedded_redis
from shared.config import PROJECT_ROOT, Settings
from shared.pipeline.ingestion import SourceDocument, ingest
from shared.retrieval.embeddings import get_embedder

PDFS = sorted((PROJECT_ROOT / "data" / "northwind").glob("*.pdf"))


def main() -> None:
    import torch

    torch.set_num_threads(1)  # as in a cpu worker: one thread per process
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp))
        record = embedded_redis.start(settings)
        try:
            client = redis.Redis.from_url(record.info["url"])
            started = time.perf_counter()
            embedder = get_embedder()
            load_s = time.perf_counter() - started
            sources = [SourceDocument(p.name, p.read_bytes()) for p in PDFS]
            started = time.perf_counter()
            report = ingest(client, "bench", sources, None, None, embedder, (1000, 150))
            wall = time.perf_counter() - started
        finally:
            embedded_redis.stop(settings)
    pages = sum(d["pages"] for d in report.documents)
    machine.write("ingest", {
        "documents": [d["name"] for d in report.documents],
        "pages": pages,
        "chunks": report.chunks,
        "wall_s": wall,
        "pages_per_s": pages / wall,
        "chunks_per_s": report.chunks / wall,
        "embedder_load_s": load_s,
        "phases_s": report.timings_s,
        "embed_chunks_per_s": report.chunks / report.timings_s["embed"],
        "extract_pages_per_s": pages / report.timings_s["extract"],
        "torch_threads": 1,
        "command": ".venv/bin/python -m benchmarks.bench_ingest",
    })


if __name__ == "__main__":
    main()
