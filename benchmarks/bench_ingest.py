"""Ingestion speed against the study's LangChain ingestion, in one run, on the same PDFs:
a 639-page PDF (the two Northwind PDFs, three times over, in one file: about the size of the
study's 600-page guide) and the two Northwind PDFs. Pages and chunks per second, by phase
(extract, chunk, embed, index, store), against a real Redis; the embedder is loaded before the
clock starts on both sides.

ragfleet: `shared.pipeline.ingestion.ingest` as a cpu worker runs it, with the worker's thread
policy (every core while no model pool of the host is generating) and its embedder (the
`embedder` setting, onnx-fp32 by default; --embedder picks another, e.g. onnx-int8).
LangChain: PyPDFLoader, RecursiveCharacterTextSplitter (1000/150), FAISS.from_documents with the
same all-MiniLM-L6-v2 on sentence-transformers (torch, all cores) and BM25Retriever.

Needs the optional extra for the LangChain side: pip install -e '.[bench]'.

    .venv/bin/python -m benchmarks.bench_ingest [--copies 3] [--skip-langchain] [--embedder KIND]
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from pathlib import Path

import redis

from benchmarks import machine
from broker import embedded_redis
from shared.config import PROJECT_ROOT, Settings, get_settings
from shared.pipeline.ingestion import SourceDocument, ingest
from shared.retrieval.embeddings import KINDS, get_embedder
from shared.state import collection_store

NORTHWIND = sorted((PROJECT_ROOT / "data" / "northwind").glob("*.pdf"))


def long_pdf(copies: int) -> bytes:
    """The Northwind PDFs `copies` times over in one file (real pages: real text, real layout)."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for _ in range(copies):
        for pdf in NORTHWIND:
            for page in PdfReader(pdf).pages:
                writer.add_page(page)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def run_ragfleet(client: redis.Redis, name: str, sources: list[SourceDocument],
                 kind: str) -> dict:
    cores = os.cpu_count() or 1
    started = time.perf_counter()
    report = ingest(client, name, sources, None, None, get_embedder(), (1000, 150),
                    threads=lambda: cores,  # an idle host: no pool generating
                    embedder_kind=kind)
    wall = time.perf_counter() - started
    pages = sum(d["pages"] for d in report.documents)
    return {"pages": pages, "chunks": report.chunks, "wall_s": wall,
            "pages_per_s": pages / wall, "chunks_per_s": report.chunks / wall,
            "phases_s": report.timings_s,
            "embed_chunks_per_s": report.chunks / report.timings_s["embed"],
            "extract_pages_per_s": pages / report.timings_s["extract"],
            "embed_threads": cores,
            "embedder": collection_store.manifest(client, name).embedder_id()}


def run_langchain(paths: list[Path]) -> dict:
    import torch
    from langchain_community.document_loaders import PyPDFLoader
    from langchain_community.retrievers import BM25Retriever
    from langchain_community.vectorstores import FAISS
    from langchain_core.embeddings import Embeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    class StudyMiniLM(Embeddings):  # the study's: sentence-transformers on torch, not ragfleet's
        def embed_documents(self, texts):
            return get_embedder("torch-fp32").embed(list(texts)).tolist()

        def embed_query(self, text):
            return get_embedder("torch-fp32").embed([text])[0].tolist()

    torch.set_num_threads(os.cpu_count() or 1)  # HuggingFaceEmbeddings' default
    started = time.perf_counter()
    pages = [page for path in paths for page in PyPDFLoader(str(path)).load()]
    loaded = time.perf_counter()
    chunks = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=150) \
        .split_documents(pages)
    split = time.perf_counter()
    FAISS.from_documents(chunks, StudyMiniLM())
    embedded = time.perf_counter()
    BM25Retriever.from_documents(chunks)
    wall = time.perf_counter() - started
    return {"pages": len(pages), "chunks": len(chunks), "wall_s": wall,
            "chunks_per_s": len(chunks) / wall,
            "phases_s": {"load": loaded - started, "split": split - loaded,
                         "embed_and_faiss": embedded - split, "bm25": wall - (embedded - started)}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--copies", type=int, default=3)
    parser.add_argument("--skip-langchain", action="store_true")
    parser.add_argument("--embedder", choices=KINDS, default=None,
                        help="the embedder of ragfleet's collection (default: the setting's)")
    args = parser.parse_args()
    kind = args.embedder or get_settings().embedder
    get_embedder().embed(["warm up"])  # loaded before either clock starts
    get_embedder(kind).embed(["warm up"])
    if not args.skip_langchain:
        get_embedder("torch-fp32").embed(["warm up"])
    figures: dict = {"command": f".venv/bin/python -m benchmarks.bench_ingest --copies "
                                f"{args.copies} --embedder {kind}"}
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "northwind-x3.pdf"
        big.write_bytes(long_pdf(args.copies))
        corpora = {"long_pdf": [big], "northwind": NORTHWIND}
        settings = Settings(data_dir=Path(tmp) / "data")
        record = embedded_redis.start(settings)
        try:
            client = redis.Redis.from_url(record.info["url"])
            for label, paths in corpora.items():
                sources = [SourceDocument(p.name, p.read_bytes()) for p in paths]
                ours = run_ragfleet(client, label, sources, kind)
                entry = {"documents": [p.name for p in paths], "ragfleet": ours}
                if not args.skip_langchain:
                    theirs = run_langchain(paths)
                    entry["langchain"] = theirs
                    entry["speedup_vs_langchain"] = theirs["wall_s"] / ours["wall_s"]
                figures[label] = entry
        finally:
            embedded_redis.stop(settings)
    figures["chunks_per_s"] = figures["long_pdf"]["ragfleet"]["chunks_per_s"]
    figures["speedup_vs_langchain"] = figures["long_pdf"].get("speedup_vs_langchain")
    print({k: figures[k] for k in ("chunks_per_s", "speedup_vs_langchain")})
    machine.write("ingest", figures)


if __name__ == "__main__":
    main()
