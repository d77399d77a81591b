"""`up` refuses pools that do not fit the memory left, counting only those it would start."""

from __future__ import annotations

import os

import psutil
import pytest

from broker import processes
from producer.fleet import PoolPlan, check_memory
from shared.config import Settings
from shared.errors import UsageError
from shared.llm.memory import MemoryEstimate

pytestmark = pytest.mark.unit


def plan(name: str, size: int, model: str | None = "m") -> PoolPlan:
    estimate = MemoryEstimate(size, 0, 0) if model else None
    return PoolPlan(name, ["true"], "q", model, size, estimate, 2048, 1)


def test_pools_that_fit_together_pass_and_one_too_many_is_named(tmp_path):
    settings = Settings(data_dir=tmp_path)
    free = psutil.virtual_memory().available
    check_memory(settings, [plan("pool-cpu", 2**20, None), plan("pool-a", 2**20)])
    with pytest.raises(UsageError, match="model 'b' with parallel 1 needs about"):
        check_memory(settings, [plan("pool-a", free // 2), plan("pool-b", free // 2 + 2**30,
                                                                "b")])
    with pytest.raises(UsageError, match="the cpu pool"):
        check_memory(settings, [plan("pool-cpu", free * 2, None)])


def test_a_pool_already_running_is_not_counted_again(tmp_path):
    settings = Settings(data_dir=tmp_path)
    me = psutil.Process()
    processes.save_record(settings.run_dir, processes.ProcessRecord(
        "pool-big", os.getpid(), me.create_time(), ["python"], str(tmp_path / "log")))
    check_memory(settings, [plan("pool-big", psutil.virtual_memory().total * 2)])
