"""The fleet's cpu pool (as `ragfleet up` starts it) retrieves for a running batch while it
ingests a long PDF: the batch's retrieval does not queue behind the ingestion (issue 16)."""

from __future__ import annotations

import json

import pytest

from benchmarks.bench_ingest import long_pdf
from producer import fleet as fleet_plans
from shared.llm.catalog import load_fleet_catalog
from shared.state import batch_store, jobs
from tests.e2e.test_reliability import Fleet, questions
from tests.helpers import ragfleet, wait_for

pytestmark = pytest.mark.e2e


def test_the_cpu_pool_retrieves_for_a_batch_while_it_ingests_a_long_pdf(tmp_path):
    fleet = Fleet(tmp_path, {"RAGFLEET_CPU_TASK_TIME_LIMIT_S": "600"})  # the default limit
    try:
        (cpu,) = fleet_plans.plan_pools(load_fleet_catalog(fleet.settings), fleet.settings, [],
                                        None)
        fleet.start(*cpu.argv[cpu.argv.index("--cpu"):])  # the arguments `up` gives it
        fleet.ingest()  # the small collection the batch asks about
        pdf = tmp_path / "manual.pdf"
        pdf.write_bytes(long_pdf(3))  # 639 pages: about 40 s of embedding on two cores
        sent = ragfleet("ingest", str(pdf), "-c", "manual", "--no-wait", "--json", env=fleet.env,
                        timeout=120)
        assert sent.returncode == 0, sent.stderr
        job_id = json.loads(sent.stdout)["id"]
        wait_for(lambda: jobs.get(fleet.client, job_id).get("stage") == "embed", 120,
                 what="the ingestion embedding")
        # no pool answers: the batch's work on the cpu pool is its retrieval
        batch_id = fleet.ask(questions(3), "--queue-anyway")
        units = batch_store.units(fleet.client, batch_id)
        wait_for(lambda: all(batch_store.contexts(fleet.client, batch_id, unit) for unit in units),
                 120, what="the batch's retrieval")
        assert jobs.get(fleet.client, job_id)["state"] == jobs.RUNNING  # not behind it
        done = wait_for(lambda: (j := jobs.get(fleet.client, job_id))["state"] in jobs.FINISHED
                        and j, 600, interval=1, what="the ingestion")
        assert done["state"] == jobs.DONE, done["error"]
    finally:
        fleet.close()
