"""Pure scheduling decisions: how many containers to add, retry delays, settings precedence."""

from __future__ import annotations

import pytest
from modal_proto import api_pb2

from berth.scheduling.autoscaler import containers_needed, max_containers, scaledown_window
from berth.scheduling.tasks import TaskInfo
from berth.services.results import retry_delay_s


def _task(slots: int, inflight: int, state: str = "running") -> TaskInfo:
    return TaskInfo("ta-x", "fu-x", "ap-x", "h", slots, 0.0, state=state, inflight=inflight)


def test_no_new_container_while_free_slots_cover_the_queue() -> None:
    assert containers_needed(2, [_task(3, 1)], per_task=3) == 0


def test_containers_added_for_inputs_beyond_free_slots() -> None:
    assert containers_needed(10, [_task(1, 1)], per_task=1) == 10
    assert containers_needed(10, [_task(4, 0)], per_task=4) == 2


def test_draining_containers_do_not_count_as_capacity() -> None:
    assert containers_needed(1, [_task(5, 0, state="draining")], per_task=1) == 1


def test_autoscaler_settings_take_precedence_over_legacy_fields() -> None:
    fn = api_pb2.Function(concurrency_limit=4, task_idle_timeout_secs=30)
    assert (max_containers(fn, 8), scaledown_window(fn, 60)) == (4, 30.0)
    fn.autoscaler_settings.max_containers = 2
    fn.autoscaler_settings.scaledown_window = 5
    assert (max_containers(fn, 8), scaledown_window(fn, 60)) == (2, 5.0)
    assert (max_containers(api_pb2.Function(), 8), scaledown_window(api_pb2.Function(), 60)) == (8, 60.0)


def test_retry_delay_grows_by_the_backoff_coefficient_up_to_the_ceiling() -> None:
    policy = api_pb2.FunctionRetryPolicy(retries=5, initial_delay_ms=100, backoff_coefficient=3.0, max_delay_ms=1000)
    assert [retry_delay_s(policy, n) for n in (1, 2, 3, 4)] == pytest.approx([0.1, 0.3, 0.9, 1.0])
