"""`ragfleet demo`: the study, end to end, on the bundled Northwind PDF and the two bundled
models: start the fleet if needed, ingest, ask, wait, print the comparison, write the results."""

from __future__ import annotations

import json
from pathlib import Path

from producer import batch_client, fleet, ingest_client
from producer.session import connect
from shared.config import PROJECT_ROOT, Settings
from shared.errors import RagfleetError
from shared.llm.catalog import Catalog
from shared.llm.requests import SamplingOverrides
from shared.report import collect, exports
from shared.report import html as report_html
from shared.state import jobs

DATA = PROJECT_ROOT / "data" / "northwind"
PDF = DATA / "Northwind_Standard_Benefits_Details.pdf"
QUESTIONS = DATA / "standard_questions.jsonl"
COLLECTION = "northwind-demo"
MODELS = ["smollm2-135m", "gemma3-270m"]


def run(settings: Settings, catalog: Catalog, questions: int, max_tokens: int, top_k: int,
        say, on_batch_progress, models: list[str] | None = None) -> tuple[dict, Path]:
    models = models or MODELS
    say(f"1/4 fleet: embedded Redis, the cpu pool and pools of {', '.join(models)}")
    fleet.up(settings, catalog, models, None, False, say=say)
    session = connect(settings)
    client, app = session.client, session.sender()

    say(f"2/4 ingest {PDF.name} into collection {COLLECTION!r}")
    job_id = ingest_client.submit(app, client, settings, [str(PDF)], COLLECTION, None, None)
    job = ingest_client.wait(client, job_id)
    if job["state"] == jobs.FAILED:
        raise RagfleetError(f"demo ingestion failed: {job['error']}")
    result = job["result"]
    say(f"    version {result['version']}, {result['chunks']} chunks")

    subset = settings.data_path / "demo" / "questions.jsonl"
    subset.parent.mkdir(parents=True, exist_ok=True)
    lines = QUESTIONS.read_text(encoding="utf-8").splitlines()[:questions]
    subset.write_text("\n".join(lines) + "\n", encoding="utf-8")
    say(f"3/4 ask {len(lines)} questions to {', '.join(models)} "
        f"(top-k {top_k}, up to {max_tokens} new tokens each)")
    params = batch_client.batch_params(settings, top_k, 0.3, max_tokens, SamplingOverrides(), None)
    batch_id, _ = batch_client.submit(app, client, catalog, subset, COLLECTION, models, params,
                                      queue_anyway=False)
    batch_client.wait(client, batch_id, on_progress=on_batch_progress)

    say("4/4 results")
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
