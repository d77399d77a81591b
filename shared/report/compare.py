"""`ragfleet compare B1 B2 ...`: the same questions across batches (other models, days, machines
or settings). Each (batch, model) is a run; runs are summarised side by side over the questions
every run answered with a score, and each pair of runs gets the paired difference in cosine with
its bootstrap interval (the fair comparison: same questions, same references). Batches without
references are compared the same way on groundedness, which needs none."""

from __future__ import annotations

from shared.errors import UsageError
from shared.report.stats import model_summary, paired_differences


def run_label(batch_id: str, model: str) -> str:
    return f"{batch_id}:{model}"


def build(reports: list[dict]) -> dict:
    """reports: collect.build() of each batch."""
    if len(reports) < 2:
        raise UsageError("give at least two batches to compare")
    runs: dict[str, list[dict]] = {}
    meta: dict[str, dict] = {}
    for report in reports:
        batch = report["batch"]
        for model in batch["models"]:
            label = run_label(batch["id"], model)
            runs[label] = [r for r in report["results"]
                           if r["model"] == model and not r.get("cancelled")]
            meta[label] = {"batch": batch["id"], "model": model,
                           "collection": f"{batch['collection']} v{batch['version']}",
                           "created_at": batch["created_at"]}
    metric = "cosine" if any(r.get("cosine") is not None for results in runs.values()
                             for r in results) else "groundedness"
    scored = [{r["question_id"] for r in results if r.get(metric) is not None}
              for results in runs.values()]
    common = set.intersection(*scored) if scored else set()
    if not common:
        raise UsageError("the batches share no question that every run answered with a score")
    on_common = {label: [r for r in results if r["question_id"] in common]
                 for label, results in runs.items()}
    summary = [{**meta[label], **model_summary(label, results), "run": label}
               for label, results in on_common.items()]
    return {"questions": len(common), "metric": metric, "summary": summary,
            "paired": paired_differences(on_common)}
