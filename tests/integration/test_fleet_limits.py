"""The fleet's published limits (shared.state.fleet_limits) against a real Redis (issue 14,
defect 8): the first worker publishes, others must agree, heartbeats keep them, the last worker
to stop withdraws them."""

from __future__ import annotations

import time

import pytest

from shared.config import Settings
from shared.errors import UsageError
from shared.state import fleet_limits, keys, registry

pytestmark = pytest.mark.integration

DEFAULTS = fleet_limits.of(Settings(llm_task_time_limit_s=600, cpu_task_time_limit_s=600,
                                    visibility_timeout_s=None))
LONGER = fleet_limits.of(Settings(llm_task_time_limit_s=1200, cpu_task_time_limit_s=600,
                                  visibility_timeout_s=None))


def test_the_first_worker_publishes_and_one_with_other_limits_is_refused(redis_client):
    fleet_limits.join(redis_client, DEFAULTS, ttl_s=60)
    assert fleet_limits.published(redis_client) == DEFAULTS
    assert 0 < redis_client.ttl(keys.FLEET_LIMITS) <= 60
    fleet_limits.join(redis_client, DEFAULTS, ttl_s=60)  # the same limits: welcome
    with pytest.raises(UsageError) as refused:
        fleet_limits.join(redis_client, LONGER, ttl_s=60)
    assert str(refused.value).startswith(
        "RAGFLEET_LLM_TASK_TIME_LIMIT_S is 1200 here but 600 in the fleet; "
        "RAGFLEET_VISIBILITY_TIMEOUT_S is 1260 here but 660 in the fleet on this Redis")
    assert fleet_limits.published(redis_client) == DEFAULTS  # unchanged


def test_heartbeats_keep_the_limits_and_the_last_worker_to_stop_withdraws_them(redis_client,
                                                                                redis_url):
    info = registry.WorkerInfo(nodename="cpu-1@here", host="here", pid=1, queues=["cpu"],
                               kind="cpu", started_at=time.time())
    beat = registry.Heartbeat(redis_url, info, interval_s=5, limits=DEFAULTS)
    beat.beat()
    assert fleet_limits.published(redis_client) == DEFAULTS
    redis_client.delete(keys.FLEET_LIMITS)  # expired, or a flushed Redis
    beat.beat()
    assert fleet_limits.published(redis_client) == DEFAULTS  # published again
    other = info.model_copy(update={"nodename": "llm-1@there"})
    registry.publish(redis_client, other, {"state": "ready"}, ttl_s=60)
    beat.stop()
    assert fleet_limits.published(redis_client) == DEFAULTS  # another worker still runs
    registry.withdraw(redis_client, other.nodename)
    beat.stop()
    assert fleet_limits.published(redis_client) is None
