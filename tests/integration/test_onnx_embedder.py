"""The ONNX Runtime embedder against sentence-transformers (torch fp32, the reference), on real
texts; its export (cached, atomic, remembered when it fails); and the fall back to torch."""

from __future__ import annotations

import json
import logging
import re
import sys

import numpy as np
import pytest

from shared.errors import RagfleetError
from shared.retrieval import embeddings, onnx_embedder
from shared.retrieval.pdf import extract_pages
from tests.pdf_samples import NORTHWIND, STANDARD_PDF

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def torch_fp32():
    return embeddings.load("torch-fp32")


@pytest.fixture(scope="module")
def onnx_fp32():
    embedder = embeddings.load("onnx-fp32")
    assert embedder.id == "onnx-fp32:all-MiniLM-L6-v2", "ONNX Runtime fell back to torch"
    return embedder


def answer_reference_pairs() -> list[tuple[str, str]]:
    """Northwind references against answer-like texts: the question, the reference without its
    citation, its first sentence, a word-level paraphrase, and another question's reference."""
    rows = [json.loads(line) for line in (NORTHWIND / "ground_truth.jsonl").read_text()
            .splitlines() if line.strip()][:12]
    pairs = []
    for i, row in enumerate(rows):
        truth = row["truth"]
        plain = re.sub(r"\s*\[[^\]]*\]", "", truth).strip()
        paraphrase = plain.replace("Northwind", "the Northwind").replace(" is ", " is basically ")
        pairs += [(row["question"], truth), (plain, truth), (plain.split(". ")[0], truth),
                  (paraphrase, truth), (rows[(i + 1) % len(rows)]["truth"], truth)]
    return pairs


def cosines(embedder, pairs) -> np.ndarray:
    vectors = embedder.embed([a for a, _ in pairs] + [b for _, b in pairs])
    return (vectors[:len(pairs)] * vectors[len(pairs):]).sum(1)


def test_onnx_fp32_scores_answer_reference_pairs_as_torch_does(torch_fp32, onnx_fp32):
    pairs = answer_reference_pairs()
    expected, got = cosines(torch_fp32, pairs), cosines(onnx_fp32, pairs)
    assert len(pairs) == 60 and expected.min() < 0.5 < expected.max()  # unlike and alike pairs
    assert np.abs(got - expected).max() < 1e-3
    # and a scoring step's own call: one answer, one reference
    answer, reference = pairs[3]
    one = onnx_fp32.embed([answer, reference])
    assert abs(float(one[0] @ one[1]) - float(expected[3])) < 1e-3


def test_onnx_fp32_vectors_match_torch_on_pages_and_short_texts(torch_fp32, onnx_fp32):
    # whole pages run past the 256-token limit: both truncate them the same way
    texts = [p.text for p in extract_pages(STANDARD_PDF.read_bytes(), "std")[:10]]
    texts += ["deductible", "  What is covered?  ", "", "in-network vs out-of-network (page 7)"]
    expected, got = torch_fp32.embed(texts), onnx_fp32.embed(texts)
    assert got.shape == expected.shape == (len(texts), 384) and got.dtype == np.float32
    assert np.abs(got - expected).max() < 1e-4
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_onnx_embedder_keeps_the_embedders_interface(onnx_fp32):
    texts = [p.text for p in extract_pages(STANDARD_PDF.read_bytes(), "std")[:39]] + ["short"]
    plain = onnx_fp32.embed(texts)
    asked, seen = [], []
    both = onnx_fp32.embed(texts, progress=lambda done, total: seen.append((done, total)),
                           threads=lambda: asked.append(2) or 2)
    assert asked and np.abs(plain - both).max() < 1e-5
    # progress counts up to every text, every 32 texts or so (each may be a Redis call)
    assert seen == [(32, 40), (40, 40)]
    # texts go longest first, but each vector lands in its text's row
    assert np.abs(plain[3] - onnx_fp32.embed([texts[3]])[0]).max() < 1e-5
    assert np.abs(plain[-1] - onnx_fp32.embed(["short"])[0]).max() < 1e-5
    assert onnx_fp32.embed([]).shape == (0, 384)
    assert onnx_fp32.dim == 384 and onnx_fp32.name == "all-MiniLM-L6-v2"


def test_int8_is_close_to_fp32_but_not_exact(onnx_fp32):
    int8 = embeddings.get_embedder("onnx-int8")
    assert int8.id == "onnx-int8:all-MiniLM-L6-v2"
    texts = [p.text for p in extract_pages(STANDARD_PDF.read_bytes(), "std")[:8]]
    a, b = int8.embed(texts), onnx_fp32.embed(texts)
    agreement = (a * b).sum(1)
    assert agreement.min() > 0.97 and np.abs(a - b).max() > 1e-3
    assert not embeddings.interchangeable(int8.id, onnx_fp32.id)
    assert embeddings.interchangeable(onnx_fp32.id, "torch-fp32:all-MiniLM-L6-v2")


def test_an_int8_vector_does_not_depend_on_the_texts_embedded_with_it():
    """int8 activations are quantized with one scale per run: the embedder runs each text alone,
    so a chunk's vector is the same whichever texts an ingestion's window held beside it, and
    the same as when that text is embedded alone (a query)."""
    int8 = embeddings.get_embedder("onnx-int8")
    texts = [p.text for p in extract_pages(STANDARD_PDF.read_bytes(), "std")[:6]]
    together = int8.embed(texts)
    assert np.array_equal(together[2], int8.embed([texts[2]])[0])
    assert np.array_equal(together[:3], int8.embed(texts[:3], threads=lambda: 2))


def test_export_is_cached_and_atomic(tmp_path, monkeypatch):
    """A fresh cache: the first use exports (a child process, checked against torch), later
    ones reuse the file without running the exporter again."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = onnx_embedder.ensure_model("fp32")
    assert path.is_file() and str(path).startswith(str(tmp_path / "ragfleet" / "onnx"))
    report = json.loads(path.with_suffix(".json").read_text())
    assert report["max_abs_diff"] < 1e-4 and report["max_cosine_diff"] < 1e-4
    # nothing half-written is left beside it
    assert sorted(p.name for p in path.parent.iterdir()) == [
        ".export.lock", "model.json", "model.onnx"]
    monkeypatch.setattr(onnx_embedder, "build_command",
                        lambda *a: pytest.fail("exported a second time"))
    assert onnx_embedder.ensure_model("fp32") == path
    embedder = onnx_embedder.OnnxEmbedder("fp32")
    assert embedder.path == path and embedder.embed(["hello"]).shape == (1, 384)


def test_export_key_follows_the_weights_and_the_exporter(tmp_path, monkeypatch):
    model_dir = tmp_path / "model"
    (model_dir / "1_Pooling").mkdir(parents=True)
    for name in onnx_embedder.KEY_FILES:
        (model_dir / name).write_text("a")
    first = onnx_embedder.export_key(model_dir)
    (model_dir / "model.safetensors").write_text("b")
    second = onnx_embedder.export_key(model_dir)
    monkeypatch.setattr(onnx_embedder, "_version", lambda package: "9.9")
    assert len({first, second, onnx_embedder.export_key(model_dir)}) == 3


class StubTorch:
    """Stands in for the torch embedder (loading it takes seconds)."""

    id, name, dim = "torch-fp32:all-MiniLM-L6-v2", "all-MiniLM-L6-v2", 384


def test_missing_onnxruntime_falls_back_to_torch(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails
    monkeypatch.setattr(embeddings, "Embedder", StubTorch)
    with caplog.at_level(logging.WARNING, logger="shared.retrieval.embeddings"):
        embedder = embeddings.load("onnx-fp32")
    assert isinstance(embedder, StubTorch)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "onnxruntime is not installed" in lines[0]
    assert "\n" not in lines[0]
    with pytest.raises(RagfleetError, match="onnx-int8 embedder is unavailable"):
        embeddings.load("onnx-int8")  # no other embedder makes int8 vectors


def test_failed_export_falls_back_to_torch_and_is_not_retried(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(embeddings, "Embedder", StubTorch)
    runs = []

    def failing(precision, target):
        runs.append(precision)
        return [sys.executable, "-c", "import sys; sys.exit('no exporter here')"]

    monkeypatch.setattr(onnx_embedder, "build_command", failing)
    with caplog.at_level(logging.WARNING, logger="shared.retrieval.embeddings"):
        assert isinstance(embeddings.load("onnx-fp32"), StubTorch)
    assert runs == ["fp32"] and "no exporter here" in caplog.text
    assert not onnx_embedder.model_file("fp32").exists()
    # the next process does not try again (each worker would pay for it)...
    with pytest.raises(onnx_embedder.OnnxUnavailable, match="failed before"):
        onnx_embedder.ensure_model("fp32")
    assert isinstance(embeddings.load("onnx-fp32"), StubTorch) and runs == ["fp32"]
    # ...`make install`'s export does
    assert onnx_embedder.main(["export", "--precision", "fp32"]) == 1 and runs == ["fp32"] * 2


def test_scoring_embedder_is_fp32_whatever_the_setting(monkeypatch):
    assert embeddings.exact_kind("onnx-int8") == "onnx-fp32"
    assert embeddings.exact_kind("torch-fp32") == "torch-fp32"
    from shared.config import get_settings

    monkeypatch.setenv("RAGFLEET_EMBEDDER", "onnx-int8")
    get_settings.cache_clear()
    try:
        assert embeddings.exact_kind() == "onnx-fp32"
    finally:
        get_settings.cache_clear()


def test_the_onnx_embedders_batch_threads_run_at_idle_priority():
    from shared.retrieval.embeddings import get_embedder
    from shared.retrieval.priority import is_idle_priority

    embedder = get_embedder("onnx-fp32")
    if not hasattr(embedder, "_executor"):
        pytest.skip("the ONNX export is not available here")
    assert embedder._executor().submit(is_idle_priority).result() is True
    assert not is_idle_priority()


def test_scoring_that_yields_to_the_pools_gives_the_very_vectors_of_a_plain_call():
    from shared.pipeline.core_sharing import Yielding
    from shared.retrieval.embeddings import get_embedder

    embedder = get_embedder("onnx-fp32")
    texts = ["The deductible is $2,000 a person.", "Cleanings are covered twice a year.",
             "What is covered?", "Out-of-network providers cost more, and the plan pays less.",
             "No."]
    assert np.array_equal(Yielding(embedder, lambda: 1).embed(texts), embedder.embed(texts))
