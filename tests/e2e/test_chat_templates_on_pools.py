"""Any chat template works, on real pools: copies of the bundled SmolLM2 GGUF carrying the real
templates of the study's models (Mistral Instruct's refuses a system message, TinyLlama's takes
one) and one with no template at all, served from a user's catalog and models directory."""

from __future__ import annotations

import json

import pytest

from tests.chat_template_samples import MISTRAL_INSTRUCT, TINYLLAMA_CHAT, smollm2_copy
from tests.e2e.batch_data import QUESTIONS, write_jsonl
from tests.helpers import clean_env, ragfleet
from tests.pdf_samples import first_pages_pdf

pytestmark = pytest.mark.e2e

TEMPLATES = {"smol-mistral-template": MISTRAL_INSTRUCT, "smol-tinyllama-template": TINYLLAMA_CHAT,
             "smol-no-template": None}


def test_every_answer_is_stored_whatever_the_template(tmp_path):
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    catalog = ['[defaults]\nn_ctx = 2048\nmax_tokens = 24\n']
    for name, template in TEMPLATES.items():
        smollm2_copy(models_dir / f"{name}.gguf", template)
        catalog.append(f'[models.{name}]\nfile = "{name}.gguf"\n')
    (tmp_path / "catalog.toml").write_text("\n".join(catalog), encoding="utf-8")
    env = clean_env(RAGFLEET_DATA_DIR=str(tmp_path / "data"), RAGFLEET_MODELS_DIR=str(models_dir),
                    RAGFLEET_CATALOG_PATH=str(tmp_path / "catalog.toml"))

    listed = json.loads(ragfleet("models", "--json", env=env, timeout=120).stdout)["models"]
    how = {m["name"]: m["chat_template"] for m in listed}
    assert how == {
        "smol-mistral-template":
            "gguf (refuses a system turn: instruction folded into the first user turn)",
        "smol-tinyllama-template": "gguf",
        "smol-no-template": "chatml (fallback: the GGUF has none)",
    }

    up = ragfleet("up", *[a for m in TEMPLATES for a in ("--model", m)], env=env, timeout=400)
    assert up.returncode == 0, up.stderr
    try:
        pdf = tmp_path / "plan.pdf"
        pdf.write_bytes(first_pages_pdf(12))
        ingest = ragfleet("ingest", str(pdf), "-c", "nw", "--wait", env=env, timeout=600)
        assert ingest.returncode == 0, ingest.stderr
        questions = write_jsonl(tmp_path / "q.jsonl", QUESTIONS[:2])
        models = [a for m in TEMPLATES for a in ("-m", m)]
        asked = ragfleet("ask", str(questions), "-c", "nw", *models, "--top-k", "2", "--wait",
                         "--json", env=env, timeout=900)
        assert asked.returncode == 0, asked.stderr
        batch = json.loads(asked.stdout)
        assert (batch["completed"], batch["failed"], batch["total"]) == (6, 0, 6)
        report = json.loads(ragfleet("results", batch["batch"], "--format", "json", env=env,
                                     timeout=120).stdout)
        for result in report["results"]:
            assert result["error"] is None, result
            assert result["sampling"]["repeat_penalty"] == 1.1  # the study stack's default
        # SmolLM2 was trained on ChatML: under a foreign template it may stop at once (an
        # empty answer is its answer); under ChatML it answers
        assert all(r["answer"] for r in report["results"] if r["model"] == "smol-no-template")
    finally:
        ragfleet("down", env=env, timeout=120)
