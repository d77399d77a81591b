"""Ingestion through the real CLI: a real cpu worker process, a real Redis, the real PDFs."""

from __future__ import annotations

import functools
import http.server
import json
import subprocess
import sys
import threading

import pytest

from broker import connection
from shared.state.registry import live_workers
from tests.conftest import stop_process
from tests.helpers import ROOT, assert_one_line_error, clean_env, ragfleet, start_worker, wait_for
from tests.pdf_samples import NORTHWIND, PAGE7_PHRASE, STANDARD_PDF, write_samples

pytestmark = pytest.mark.e2e

COLLECTION = "northwind"


@pytest.fixture(scope="module")
def cpu_fleet(redis_url, tmp_path_factory):
    """A cpu worker against the session Redis, as on a second machine (REDIS_URL set). It may
    download from loopback (RAGFLEET_ALLOW_PRIVATE_URLS=1): the test's PDF server is there."""
    folder = tmp_path_factory.mktemp("ingest")
    env = clean_env(REDIS_URL=redis_url, RAGFLEET_DATA_DIR=str(folder / "data"),
                    RAGFLEET_ALLOW_PRIVATE_URLS="1")
    proc = start_worker(["--cpu"], env, folder / "cpu.log")
    client = connection.client(redis_url)
    client.flushdb()
    wait_for(lambda: any("cpu" in w["queues"] for w in live_workers(client)), 120, what="cpu pool")
    try:
        yield env, client, folder
    finally:
        stop_process(proc)


@pytest.fixture(scope="module")
def ingested(cpu_fleet):
    env, client, folder = cpu_fleet
    result = ragfleet("ingest", str(STANDARD_PDF), "--collection", COLLECTION, "--wait", "--json",
                      env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def show(env) -> dict:
    result = ragfleet("collections", "show", COLLECTION, "--json", env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_ingest_makes_a_version_with_pages_and_chunks(cpu_fleet, ingested):
    env, _, _ = cpu_fleet
    assert ingested["state"] == "done"
    assert ingested["result"]["version"] == 1
    info = show(env)
    assert info["version"] == 1 and info["chunks"] > 104
    assert info["embedding_model"] == "all-MiniLM-L6-v2" and info["chunk_size"] == 1000
    assert [(d["name"], d["pages"]) for d in info["documents"]] == [(STANDARD_PDF.name, 104)]
    listing = json.loads(ragfleet("collections", "--json", env=env, timeout=60).stdout)
    assert [c["name"] for c in listing["collections"]] == [COLLECTION]


def test_another_process_loads_the_index_from_redis(cpu_fleet, ingested, redis_url):
    """The worker that ingested is one process; a fresh one finds the same index in Redis."""
    env, _, _ = cpu_fleet
    script = (
        "import json, redis, sys\n"
        "from shared.pipeline.ingestion import load_index\n"
        "from shared.retrieval.embeddings import get_embedder\n"
        "client = redis.Redis.from_url(sys.argv[1])\n"
        "meta, index = load_index(client, sys.argv[2])\n"
        "q = sys.argv[3]\n"
        "bm25 = [index.chunks[i].page for i, _ in index.bm25_search(q, 3)]\n"
        "vec = [index.chunks[i].page for i, _ in index.vector_search(get_embedder().embed([q])[0], 3)]\n"
        "print(json.dumps({'version': meta.version, 'bm25': bm25, 'faiss': vec}))\n"
    )
    out = subprocess.run([sys.executable, "-c", script, redis_url, COLLECTION, PAGE7_PHRASE], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["version"] == 1
    assert found["bm25"][0] == 7 and 7 in found["faiss"]


def test_reingesting_the_same_pdf_changes_nothing(cpu_fleet, ingested):
    env, _, _ = cpu_fleet
    again = ragfleet("ingest", str(STANDARD_PDF), "-c", COLLECTION, "--wait", "--json",
                     env=env, timeout=300)
    assert again.returncode == 0, again.stderr
    result = json.loads(again.stdout)["result"]
    assert result["changed"] is False and result["version"] == 1
    assert show(env)["chunks"] == ingested["result"]["chunks"]


BAD_INPUTS = [
    ("missing", lambda f: str(f / "nope.pdf"), 2, "no such file"),
    ("not_a_pdf", lambda f: str(f / "not_a_pdf.pdf"), 2, "not a PDF"),
    ("empty", lambda f: str(f / "empty.pdf"), 2, "empty"),
    ("truncated", lambda f: str(f / "truncated.pdf"), 2, "corrupt or truncated"),
    ("scanned", lambda f: str(f / "scanned.pdf"), 2, "no extractable text"),
    ("locked", lambda f: str(f / "locked.pdf"), 2, "encrypted"),
    ("ftp_url", lambda f: "ftp://example.org/doc.pdf", 2, "only http and https"),
    ("file_url", lambda f: "file:///etc/passwd", 2, "only http and https"),
    ("dead_url", lambda f: "http://127.0.0.1:1/doc.pdf", 2, "could not connect"),
]


@pytest.mark.parametrize("label, make, code, needle", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_is_one_line_and_keeps_the_version(cpu_fleet, ingested, label, make, code, needle):
    env, _, folder = cpu_fleet
    write_samples(folder / "samples")
    before = show(env)
    result = ragfleet("ingest", make(folder / "samples"), "-c", COLLECTION, "--wait",
                      env=env, timeout=300)
    assert_one_line_error(result, code, needle)
    assert show(env) == before


def test_file_over_the_size_limit(cpu_fleet, ingested):
    env, _, _ = cpu_fleet
    small = {**env, "RAGFLEET_MAX_DOCUMENT_BYTES": "1000"}
    result = ragfleet("ingest", str(STANDARD_PDF), "-c", COLLECTION, "--wait", env=small)
    assert_one_line_error(result, 2, "over the limit")


def test_encrypted_pdf_with_empty_password_is_opened(cpu_fleet, ingested):
    env, _, folder = cpu_fleet
    samples = write_samples(folder / "samples")
    result = ragfleet("ingest", str(samples["empty_password.pdf"]), "-c", "unlocked", "--wait",
                      "--json", env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["result"]["documents"][0]["pages"] == 104
    deleted = ragfleet("collections", "delete", "unlocked", env=env, timeout=60)
    assert deleted.returncode == 0, deleted.stderr
    assert_one_line_error(ragfleet("collections", "show", "unlocked", env=env), 2,
                          "unknown collection")


class _Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        targets = {"/to-file": "file:///etc/passwd", "/to-ftp": "ftp://127.0.0.1/doc.pdf"}
        if self.path in targets:
            self.send_response(302)
            self.send_header("Location", targets[self.path])
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def pdf_server():
    handler = functools.partial(_Handler, directory=str(NORTHWIND))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_url_ingestion_and_redirect_to_another_scheme(cpu_fleet, ingested, pdf_server):
    env, _, _ = cpu_fleet
    url = f"{pdf_server}/{STANDARD_PDF.name}"
    result = ragfleet("ingest", url, "-c", COLLECTION, "--wait", "--json", env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["result"]["documents"][0]["status"] == "unchanged"
    to_file = ragfleet("ingest", f"{pdf_server}/to-file", "-c", COLLECTION, "--wait", env=env)
    assert_one_line_error(to_file, 2, "file:///etc/passwd", "not allowed")
    to_ftp = ragfleet("ingest", f"{pdf_server}/to-ftp", "-c", COLLECTION, "--wait", env=env)
    assert_one_line_error(to_ftp, 2, "only http and https")
    small = {**env, "RAGFLEET_MAX_DOCUMENT_BYTES": "5000"}
    too_big = ragfleet("ingest", url, "-c", COLLECTION, "--wait", env=small)
    assert_one_line_error(too_big, 2, "over the limit")


def test_a_path_in_a_message_is_never_read(cpu_fleet, redis_url, tmp_path):
    """A hand-made job naming a local file: the worker only reads bytes the producer uploaded."""
    from broker.app import sender
    from broker.queues import INGEST_TASK
    from shared.config import Settings
    from shared.state import jobs

    env, client, _ = cpu_fleet
    secret = tmp_path / "secret.pdf"
    secret.write_bytes(STANDARD_PDF.read_bytes())
    job_id = jobs.new_id()
    jobs.create(client, job_id, "stolen", [{"name": "secret.pdf", "path": str(secret)}], {})
    sender(redis_url, Settings(redis_url=redis_url)).send_task(INGEST_TASK, args=[job_id])
    job = wait_for(lambda: (j := jobs.get(client, job_id))["state"] in jobs.FINISHED and j, 120,
                   what="the job to finish")
    assert job["state"] == "failed" and "uploaded bytes" in job["error"]
    shown = ragfleet("collections", "show", "stolen", env=env, timeout=60)
    assert shown.returncode == 2  # nothing was ingested from the named path
