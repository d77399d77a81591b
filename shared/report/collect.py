"""A batch's results gathered for reporting: the batch, per-model summary, pairs, rows."""

from __future__ import annotations

import redis

from shared.report.stats import summarize
from shared.state import batch_store, judgements


def build(client: redis.Redis, batch_id: str) -> dict:
    batch = batch_store.get(client, batch_id)
    order = {q["id"]: i for i, q in enumerate(batch_store.questions(client, batch_id))}
    models = batch["models"]
    results = sorted(batch_store.results(client, batch_id),
                     key=lambda r: (order.get(r["question_id"], 0), models.index(r["model"])))
    # `ragfleet judge`: each judging model's grade, stored apart, shown with the result
    for judge, found in judgements.of_batch(client, batch_id).items():
        for r in results:
            j = found.get((r["question_id"], r["model"]))
            if j is not None:
                r.setdefault("judgements", {})[judge] = {
                    "grade": j.get("grade"), "raw": j.get("raw"), "error": j.get("error")}
    stats = summarize([r for r in results if not r.get("cancelled")], models)
    return {"batch": batch, **stats, "results": results}
