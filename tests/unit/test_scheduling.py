"""Pure scheduling decisions: how many containers to add, retry delays, settings precedence."""

from __future__ import annotations

import pytest
from modal_proto import api_pb2

from berth.errors import InvalidArgument
from berth.scheduling.autoscaler import containers_needed, max_containers, scaledown_window
from berth.scheduling.overrides import AutoscalerOverrides, static_settings, warm_target
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
    assert (max_containers(static_settings(fn), 8), scaledown_window(static_settings(fn), 60)) == (4, 30.0)
    fn.autoscaler_settings.max_containers = 2
    fn.autoscaler_settings.scaledown_window = 5
    assert (max_containers(static_settings(fn), 8), scaledown_window(static_settings(fn), 60)) == (2, 5.0)
    empty = static_settings(api_pb2.Function())
    assert (max_containers(empty, 8), scaledown_window(empty, 60)) == (8, 60.0)


def test_warm_target_keeps_min_containers_and_a_buffer_beyond_busy_ones_within_max() -> None:
    assert warm_target(api_pb2.AutoscalerSettings(min_containers=2), busy=0) == 2
    assert warm_target(api_pb2.AutoscalerSettings(buffer_containers=1), busy=1) == 2
    assert warm_target(api_pb2.AutoscalerSettings(min_containers=3, buffer_containers=1), busy=1) == 3
    assert warm_target(api_pb2.AutoscalerSettings(buffer_containers=2, max_containers=3), busy=2) == 3
    assert warm_target(api_pb2.AutoscalerSettings(), busy=4) == 4


def test_retry_delay_grows_by_the_backoff_coefficient_up_to_the_ceiling() -> None:
    policy = api_pb2.FunctionRetryPolicy(retries=5, initial_delay_ms=100, backoff_coefficient=3.0, max_delay_ms=1000)
    assert [retry_delay_s(policy, n) for n in (1, 2, 3, 4)] == pytest.approx([0.1, 0.3, 0.9, 1.0])


class _OverrideRows:
    def __init__(self) -> None:
        self.rows: dict[str, bytes] = {}

    async def put_autoscaler_override(self, function_id: str, configuration: bytes, now: float) -> None:
        self.rows[function_id] = configuration

    async def autoscaler_overrides(self) -> dict[str, bytes]:
        return dict(self.rows)

    async def delete_autoscaler_override(self, function_id: str) -> None:
        self.rows.pop(function_id, None)


async def test_overrides_lay_only_the_fields_set_over_the_decorator_and_a_redeploy_resets_them() -> None:
    rows = _OverrideRows()
    overrides = AutoscalerOverrides(rows)
    fn = api_pb2.Function(autoscaler_settings=api_pb2.AutoscalerSettings(min_containers=1, max_containers=5))
    await overrides.update("fu-1", api_pb2.AutoscalerSettings(min_containers=2), "tk-1", 10.0)
    await overrides.update("fu-1", api_pb2.AutoscalerSettings(buffer_containers=0), "tk-2", 11.0)
    got = await overrides.effective("fu-1", fn)
    assert (got.min_containers, got.max_containers, got.HasField("buffer_containers")) == (2, 5, True)
    config = overrides.configuration("fu-1")
    assert config is not None and config.override_events["min_containers"].requested_by == "tk-1"
    restarted = AutoscalerOverrides(rows)  # a new server reads them back
    assert (await restarted.effective("fu-1", fn)).min_containers == 2
    await restarted.reset("fu-1")
    assert (await AutoscalerOverrides(rows).effective("fu-1", fn)).min_containers == 1


async def test_an_override_that_makes_no_sense_is_refused() -> None:
    overrides = AutoscalerOverrides(_OverrideRows())
    with pytest.raises(InvalidArgument):
        await overrides.update("fu-1", api_pb2.AutoscalerSettings(max_containers=0), "tk-1", 1.0)
    with pytest.raises(InvalidArgument):
        await overrides.update("fu-1", api_pb2.AutoscalerSettings(target_concurrency=3), "tk-1", 1.0)
