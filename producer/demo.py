"""`ragfleet demo`: the study, end to end, on the bundled Northwind PDF and the two bundled
models: start the fleet if needed, ingest, ask, wait, print the comparison, write the results."""

from __future__ import annotations

import json
from pathlib import Path

from producer import batch_client, fleet, generation_client, ingest_client
from producer.session import connect
from shared.config import PROJECT_ROOT, Settings
from shared.errors import RagfleetError
from shared.llm.catalog import Catalog
from shared.llm.requests import SamplingOverrides
from shared.pipeline import question_generation
from shared.report import collect, exports
from shared.report import html as report_html
from shared.state import jobs

DATA = PROJECT_ROOT / "data" / "northwind"
PDF = DATA / "Northwind_Standard_Benefits_Details.pdf"
QUESTIONS = DATA / "standard_questions.jsonl"
COLLECTION = "northwind-demo"
MODELS = ["smollm2-135m", "gemma3-270m"]
GENERATOR = "qwen2.5-coder-1.5b"  # installed on request: `ragfleet models pull`
FALLBACK_GENERATOR = "smollm2-135m"  # bundled, instruction-tuned


def default_generator(catalog: Catalog, settings: Settings, models: list[str]) -> str:
    """The strongest model here to write questions: the 1.5B when it is installed, else the
    bundled instruction-tuned SmolLM2 (Gemma 3 270M is a base model: none of its 6 items
    followed the generation format in a fresh-clone demo)."""
    for name in (GENERATOR, FALLBACK_GENERATOR):
        if name in catalog.models and catalog.get(name).usable(settings.models_dir):
            return name
    return models[0]


def generate_questions(client, app, catalog: Catalog, model: str, n: int, out: Path,
                       say) -> Path:
    """Questions written from the collection by `model`'s pool, as a user without an answer
    key would have them (`ragfleet questions generate`)."""
    job_id, job = generation_client.submit(app, client, catalog, COLLECTION, model, n, seed=0,
                                           queue_anyway=False)
    total = len(job["passages"])
    generation_client.wait(client, job_id, total)
    job, kept, dropped, _ = generation_client.collect(client, job_id)
    if not kept:
        raise RagfleetError(f"{model} wrote no question that passed the filters "
                            f"({dict(dropped)}); try a stronger --generator")
    out.write_text(question_generation.questions_file(job_id, job, kept), encoding="utf-8")
    why = ", ".join(f"{k} {v}" for k, v in dropped.most_common()) or "none"
    say(f"    kept {len(kept)} of {total} items (dropped: {why}): {out}")
    return out


def run(settings: Settings, catalog: Catalog, questions: int, max_tokens: int, top_k: int | None,
        say, on_batch_progress, models: list[str] | None = None,
        generator: str | None = None) -> tuple[dict, Path]:
    """generator: write the questions with this model instead of using the bundled ones."""
    models = models or MODELS
    pools = models + ([generator] if generator and generator not in models else [])
    steps = 5 if generator else 4
    say(f"1/{steps} fleet: embedded Redis, the cpu pool and pools of {', '.join(pools)}")
    fleet.up(settings, catalog, pools, None, False, say=say)
    session = connect(settings)
    client, app = session.client, session.sender()

    say(f"2/{steps} ingest {PDF.name} into collection {COLLECTION!r}")
    job_id = ingest_client.submit(app, client, settings, [str(PDF)], COLLECTION, None, None)
    job = ingest_client.wait(client, job_id)
    if job["state"] == jobs.FAILED:
        raise RagfleetError(f"demo ingestion failed: {job['error']}")
    result = job["result"]
    say(f"    version {result['version']}, {result['chunks']} chunks")

    subset = settings.data_path / "demo" / "questions.jsonl"
    subset.parent.mkdir(parents=True, exist_ok=True)
    if generator:
        say(f"3/{steps} {generator} writes {questions} questions from the collection, no "
            "answer key needed")
        generate_questions(client, app, catalog, generator, questions, subset, say)
        lines = subset.read_text(encoding="utf-8").splitlines()
    else:
        lines = QUESTIONS.read_text(encoding="utf-8").splitlines()[:questions]
        subset.write_text("\n".join(lines) + "\n", encoding="utf-8")
    params = batch_client.per_model(batch_client.batch_params(
        settings, top_k, 0.3, max_tokens, SamplingOverrides(), None), catalog, models,
        settings.prompts_path)
    say(f"{steps - 1}/{steps} ask {len(lines)} questions to {', '.join(models)} "
        f"({exports.contexts_said(params)}; {exports.prompts_said(params)}; up to {max_tokens} "
        "new tokens each)")
    batch_id, _ = batch_client.submit(app, client, catalog, subset, COLLECTION, models, params,
                                      queue_anyway=False)
    batch_client.wait(client, batch_id, on_progress=on_batch_progress)

    say(f"{steps}/{steps} results")
    report = collect.build(client, batch_id)
    out = settings.data_path / "results" / batch_id
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(exports.to_json(report), encoding="utf-8")
    (out / "results.csv").write_text(exports.to_csv(report), encoding="utf-8")
    (out / "results.md").write_text(exports.to_markdown(report), encoding="utf-8")
    (out / "seed.csv").write_text(exports.to_seed(report), encoding="utf-8")
    (out / "report.html").write_text(report_html.render(report), encoding="utf-8")
    (out / "batch.json").write_text(json.dumps(report["batch"], indent=2), encoding="utf-8")
    return report, out
