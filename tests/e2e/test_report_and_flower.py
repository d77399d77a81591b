"""The HTML report rendered in a real headless Chromium, and Flower watching the real pools."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import urllib.error
import urllib.request

import pytest

from producer.flower import api_get
from tests.helpers import ROOT, ragfleet

pytestmark = pytest.mark.e2e

ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-quic",
                  "--no-first-run", "--virtual-time-budget=10000", "--window-size=1300,2600"]


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (make test installs Debian's chromium)")
        pytest.skip("chromium is not installed")
    return path


def test_report_draws_its_charts_in_a_browser(fleet, finished, tmp_path):
    env, _, _ = fleet
    batch_id = finished[0]["batch"]
    report = tmp_path / "report.html"
    made = ragfleet("report", batch_id, "-o", str(report), env=env, timeout=120)
    assert made.returncode == 0, made.stderr
    text = report.read_text()
    assert "<script src=" not in text  # self-contained: plotly.js is inlined, no network needed

    browser = chromium()
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    common = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
              "--enable-logging=stderr", "--v=0"]
    dom = subprocess.run([*common, "--dump-dom", report.as_uri()], capture_output=True, text=True,
                         timeout=120)
    subprocess.run([*common, f"--screenshot={shot}", report.as_uri()], capture_output=True,
                   timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    console_errors = [line for line in dom.stderr.splitlines()
                      if "CONSOLE" in line and ("Uncaught" in line or "Error" in line)]
    assert console_errors == []
    html = dom.stdout
    for chart in ("chart-treemap", "chart-latency", "chart-tradeoff", "chart-memory"):
        start = html.index(f'id="{chart}"')
        assert "main-svg" in html[start:start + 200_000], f"{chart} did not draw"
    # one treemap tile per (question, model) plus one per model
    tiles = len(re.findall(r'class="slice cursor-pointer"|class="slice"', html))
    assert tiles >= len(finished[1]["results"]) - 2  # unscored answers have no tile
    assert "Worst-scored answers" in html and "Slowest answers" in html
    # it opens with the answer the user came for: which model to run
    assert html.index('id="recommendation"') < html.index("<h2>Summary</h2>")
    assert "Which model to run" in html and "Recommended (no limits): " in html
    assert shot.exists() and shot.stat().st_size > 50_000  # kept as a test artifact


def test_flower_sees_every_pool_and_needs_auth(fleet):
    env, _, _ = fleet
    up = ragfleet("up", "--flower", "--json", env=env, timeout=300)
    assert up.returncode == 0, up.stderr
    state = json.loads(up.stdout)
    flower = state["flower"]
    assert flower["url"].startswith("http://127.0.0.1:")
    status = json.loads(ragfleet("status", "--json", env=env, timeout=60).stdout)
    assert status["flower"]["url"] == flower["url"]

    saved = json.loads(open(flower["password_file"]).read())
    workers = api_get(flower["url"], "/api/workers?refresh=1", saved["user"], saved["password"])
    assert workers, "Flower answered nothing with the right credentials"
    assert len(workers) == len(state["pools"])
    # every pool is there; a model pool waiting for its host's turn has its queue taken out
    # (workers/turns.py), so Flower lists a model queue only while that pool has the turn
    names = sorted(workers)
    for model in ("smollm2-135m", "gemma3-270m"):
        assert any(n.startswith(f"{model}-") for n in names), names
    queues = {q["name"] for w in workers.values() for q in w.get("active_queues", [])}
    assert "cpu" in queues and queues <= {"cpu", "llm.smollm2-135m", "llm.gemma3-270m"}

    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(flower["url"] + "/api/workers", timeout=10)
    assert denied.value.code == 401
    assert api_get(flower["url"], "/api/workers", saved["user"], "wrong-password") is None
