"""Hostile and broken input across the CLI: each gets one clear line on stderr, its documented
exit code, no traceback, and leaves everything stored before it exactly as it was."""

from __future__ import annotations

import json

import pytest

from shared.state import batch_store, collection_store
from tests.helpers import assert_one_line_error, clean_env, ragfleet
from tests.pdf_samples import STANDARD_PDF, write_samples

pytestmark = pytest.mark.e2e


def _questions(folder, name, content):
    path = folder / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return str(path)


def _fake_gguf_env(folder, env):
    models = folder / "fake-models"
    models.mkdir(exist_ok=True)
    (models / "tinyllama-1.1b-chat-v1.0.Q5_K_M.gguf").write_bytes(b"<!doctype html>" * 100)
    return {**env, "RAGFLEET_MODELS_DIR": str(models)}


# (id, argv builder(folder, samples, batch_id), env builder(folder, env) or None, exit code, needle)
CASES = [
    ("corrupt-pdf", lambda f, s, b: ["ingest", s["truncated.pdf"], "-c", "nw", "--wait"], None, 2,
     "corrupt or truncated"),
    ("encrypted-pdf", lambda f, s, b: ["ingest", s["locked.pdf"], "-c", "nw", "--wait"], None, 2,
     "encrypted"),
    ("empty-pdf", lambda f, s, b: ["ingest", s["empty.pdf"], "-c", "nw", "--wait"], None, 2,
     "empty"),
    ("huge-pdf", lambda f, s, b: ["ingest", str(STANDARD_PDF), "-c", "nw", "--wait"],
     lambda f, e: {**e, "RAGFLEET_MAX_DOCUMENT_BYTES": "100000"}, 2, "over the limit"),
    ("image-only-pdf", lambda f, s, b: ["ingest", s["scanned.pdf"], "-c", "nw", "--wait"], None, 2,
     "no extractable text"),
    ("text-renamed-pdf", lambda f, s, b: ["ingest", s["not_a_pdf.pdf"], "-c", "nw", "--wait"],
     None, 2, "not a PDF"),
    ("missing-pdf", lambda f, s, b: ["ingest", str(f / "nope.pdf"), "-c", "nw"], None, 2,
     "no such file"),
    ("ftp-url", lambda f, s, b: ["ingest", "ftp://example.org/a.pdf", "-c", "nw"], None, 2,
     "only http and https"),
    # the fleet's workers have no RAGFLEET_ALLOW_PRIVATE_URLS: loopback and the cloud's metadata
    # address are refused before any connection
    ("loopback-url", lambda f, s, b: ["ingest", "http://127.0.0.1:9/a.pdf", "-c", "nw", "--wait"],
     None, 2, "not a public address"),
    ("metadata-url", lambda f, s, b: ["ingest", "http://169.254.169.254/latest/meta-data/a.pdf",
                                      "-c", "nw", "--wait"], None, 2, "not a public address"),
    ("bad-collection-name", lambda f, s, b: ["ingest", str(STANDARD_PDF), "-c", "../etc"], None, 2,
     "bad collection name"),
    ("chunk-overlap", lambda f, s, b: ["ingest", str(STANDARD_PDF), "-c", "x", "--chunk-size", "100",
                                       "--chunk-overlap", "100"], None, 2, "must be smaller"),
    ("questions-empty", lambda f, s, b: ["ask", _questions(f, "e.csv", ""), "-c", "nw", "-m",
                                         "smollm2-135m"], None, 2, "empty"),
    ("questions-binary", lambda f, s, b: ["ask", _questions(f, "b.csv", b"\x89PNG\r\n\x1a\n\0\0"),
                                          "-c", "nw", "-m", "smollm2-135m"], None, 2, "binary"),
    ("questions-wrong-columns", lambda f, s, b: ["ask", _questions(f, "w.csv", "prompt,gold\na,b\n"),
                                                 "-c", "nw", "-m", "smollm2-135m"], None, 2,
     "no 'question' column"),
    ("questions-invalid-utf8", lambda f, s, b: ["ask", _questions(f, "u.csv", b"question\n\xff\xfe?\n"),
                                                "-c", "nw", "-m", "smollm2-135m"], None, 2,
     "not UTF-8"),
    ("question-million-chars", lambda f, s, b: ["ask", _questions(
        f, "m.jsonl", json.dumps({"question": "why " * 250_000}) + "\n"), "-c", "nw", "-m",
        "smollm2-135m"], None, 2, "over the limit"),
    ("questions-malformed-jsonl", lambda f, s, b: ["ask", _questions(f, "j.jsonl", '{"question": \n'),
                                                   "-c", "nw", "-m", "smollm2-135m"], None, 2,
     "not valid JSON"),
    ("questions-duplicate-ids", lambda f, s, b: ["ask", _questions(
        f, "d.csv", "id,question\n1,a?\n1,b?\n"), "-c", "nw", "-m", "smollm2-135m"], None, 2,
     "duplicate id"),
    ("questions-missing", lambda f, s, b: ["ask", str(f / "none.csv"), "-c", "nw", "-m",
                                           "smollm2-135m"], None, 2, "no such file"),
    ("unknown-model", lambda f, s, b: ["ask", _questions(f, "ok.csv", "question\nok?\n"), "-c",
                                       "nw", "-m", "gpt-5"], None, 2, "unknown model"),
    ("unknown-collection", lambda f, s, b: ["ask", _questions(f, "ok.csv", "question\nok?\n"), "-c",
                                            "nope", "-m", "smollm2-135m"], None, 2,
     "unknown collection"),
    # any --max-tokens is capped at the room left; an answer room as large as n_ctx is not
    ("answer-room-too-large", lambda f, s, b: ["ask", _questions(f, "ok.csv", "question\nok?\n"),
                                               "-c", "nw", "-m", "smollm2-135m", "--max-tokens",
                                               "5000"],
     lambda f, e: {**e, "RAGFLEET_MIN_ANSWER_TOKENS": "2040"}, 2, "leaves no room"),
    ("unknown-batch-results", lambda f, s, b: ["results", "b-doesnotexist"], None, 2,
     "unknown batch"),
    ("unknown-batch-watch", lambda f, s, b: ["watch", "b-doesnotexist"], None, 2, "unknown batch"),
    ("unknown-batch-cancel", lambda f, s, b: ["cancel", "b-doesnotexist"], None, 2, "unknown batch"),
    ("unknown-batch-resume", lambda f, s, b: ["ask", "--resume", "b-doesnotexist"], None, 2,
     "unknown batch"),
    ("results-unwritable", lambda f, s, b: ["results", b, "-o", str(f / "no" / "dir" / "r.csv"),
                                            "--format", "csv"], None, 1, "cannot write"),
    ("corrupt-gguf", lambda f, s, b: ["up", "--model", "tinyllama-1.1b-chat"], _fake_gguf_env, 2,
     "not a GGUF file"),
    ("model-not-downloaded", lambda f, s, b: ["up", "--model", "mistral-7b-instruct"], None, 2,
     "not downloaded"),
    ("redis-down", lambda f, s, b: ["ask", _questions(f, "ok.csv", "question\nok?\n"), "-c", "nw",
                                    "-m", "smollm2-135m"],
     lambda f, e: {**clean_env(REDIS_URL="redis://127.0.0.1:1/0")}, 69, "cannot reach Redis"),
    ("unwritable-data-dir", lambda f, s, b: ["up", "--model", "smollm2-135m"],
     lambda f, e: {**e, "RAGFLEET_DATA_DIR": str(_a_file(f) / "sub")}, 2, "not writable"),
    ("bad-setting", lambda f, s, b: ["status"], lambda f, e: {**e, "RAGFLEET_CORES": "many"}, 2,
     "bad setting cores"),
]


def _a_file(folder):
    path = folder / "a-regular-file"
    path.write_text("")
    return path


def snapshot(client, batch_id: str) -> dict:
    """What must not change: collections, batches, and the finished batch's results."""
    return {
        "collections": [m.__dict__ for m in collection_store.list_collections(client)],
        "batches": sorted(b["id"] for b in batch_store.list_batches(client)),
        "results": sorted(json.dumps(r, sort_keys=True)
                          for r in batch_store.results(client, batch_id)),
    }


def test_the_matrix_covers_at_least_twenty_inputs():
    assert len(CASES) >= 20


@pytest.mark.parametrize("name, argv, env_of, code, needle", CASES, ids=[c[0] for c in CASES])
def test_bad_input(fleet, finished, tmp_path, name, argv, env_of, code, needle):
    env, client, _ = fleet
    batch_id = finished[0]["batch"]
    samples = {k: str(v) for k, v in write_samples(tmp_path / "samples").items()}
    before = snapshot(client, batch_id)
    run_env = env_of(tmp_path, env) if env_of else env
    result = ragfleet(*argv(tmp_path, samples, batch_id), env=run_env, timeout=300)
    assert_one_line_error(result, code, needle)
    assert snapshot(client, batch_id) == before
