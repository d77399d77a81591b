"""The session fleet's two model pools take turns (`ragfleet up` with two models): each has
every core, and no two models ever generate at the same time, so each model's timings are its
own. Concurrent pools (`up --concurrent`) would overlap here from the batch's first answers."""

from __future__ import annotations

import json
import os

from shared.state import batch_store
from tests.e2e.batch_data import MODELS
from tests.helpers import ragfleet


def test_pools_taking_turns_have_every_core(fleet):
    env, _, _ = fleet
    out = ragfleet("status", "--json", env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    pools = {p["model"]: p for p in json.loads(out.stdout)["pools"]}
    for model in MODELS:
        assert pools[model]["n_threads"] == os.cpu_count(), pools[model]
        assert pools[model]["turn"] in ("its turn", "waiting", "idle"), pools[model]
    assert pools["cpu"]["turn"] is None  # the cpu pool never waits for a turn


def test_no_two_models_generate_at_once(fleet, finished):
    _, client, _ = fleet
    summary, _ = finished
    spans = [(r["started_at"], r["finished_at"], r["model"])
             for r in batch_store.results(client, summary["batch"]) if r.get("started_at")]
    assert {model for *_, model in spans} == set(MODELS), spans
    for start, end, model in spans:
        for other_start, other_end, other in spans:
            if other != model:
                assert end <= other_start or other_end <= start, \
                    f"{model} ran {start:.2f}-{end:.2f} while {other} ran " \
                    f"{other_start:.2f}-{other_end:.2f}"
