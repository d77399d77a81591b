"""Settings behind issue 14's defects 4, 8 and 12, as pure logic."""

from __future__ import annotations

import pytest

from producer.fleet import worker_stop_grace_s
from shared.config import Settings
from shared.state import fleet_limits

pytestmark = pytest.mark.unit


def test_a_task_runs_at_most_three_times_by_default():
    assert Settings().max_deliveries == 3
    with pytest.raises(ValueError):
        Settings(max_deliveries=0)


def test_down_waits_long_enough_for_any_running_task_to_end_by_itself():
    for settings in (Settings(), Settings(llm_task_time_limit_s=20, cpu_task_time_limit_s=900)):
        assert worker_stop_grace_s(settings) > settings.llm_task_time_limit_s
        assert worker_stop_grace_s(settings) > settings.cpu_task_time_limit_s


def test_limits_compare_the_visibility_timeout_as_it_applies():
    mine = fleet_limits.of(Settings(llm_task_time_limit_s=20, cpu_task_time_limit_s=30))
    assert mine == {"llm_task_time_limit_s": 20, "cpu_task_time_limit_s": 30,
                    "visibility_timeout_s": 90}
    assert fleet_limits.disagreements(mine, mine) == []
    fleet = {**mine, "cpu_task_time_limit_s": 60, "visibility_timeout_s": 120}
    assert fleet_limits.disagreements(mine, fleet) == [
        "RAGFLEET_CPU_TASK_TIME_LIMIT_S is 30 here but 60 in the fleet",
        "RAGFLEET_VISIBILITY_TIMEOUT_S is 90 here but 120 in the fleet"]
    assert fleet_limits.disagreements(mine, {"llm_task_time_limit_s": 20}) == []  # unpublished
