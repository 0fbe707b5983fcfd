"""What the stock CLI's observability commands read about a function: its scheduling settings, its recent
calls, its stats over a time window, its variants and its live state (`modal function info|calls|stats|
variants`, `Function.get_current_stats()`). Everything comes from the store's records of inputs and
containers, plus the task registry for what runs now."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from modal_proto import api_pb2

from berth.clock import Clock
from berth.errors import NotFound
from berth.scheduling.autoscaler import Autoscaler, max_containers, scaledown_window
from berth.scheduling.overrides import static_settings
from berth.scheduling.tasks import TaskInfo, TaskManager
from berth.services import input_stats as st
from berth.services.catalog import Catalog
from berth.services.input_stats import timestamp, window
from berth.store.ports import ActivityStore, FunctionStore, InputStore, TaskStore
from berth.store.records import InputRecord, TaskOutcome

MAX_TAIL = 1000
MAX_SCAN = 100_000  # inputs read for one stats or count answer


class InsightStore(ActivityStore, FunctionStore, InputStore, TaskStore, Protocol):
    """Inputs, containers and function variants, as observability reads them."""


def input_info(rec: InputRecord) -> api_pb2.FunctionCallInputInfo:
    info = api_pb2.FunctionCallInputInfo(
        enqueued_at=timestamp(rec.created_at),
        status=st.call_status(rec),  # type: ignore[arg-type]
        function_call_id=rec.call_id,
    )
    if rec.started_at is not None and rec.state != "queued":
        info.started_at.CopyFrom(timestamp(rec.started_at))
    if rec.holder:
        info.container_id = rec.holder
    execution = st.execution_s(rec)
    if execution is not None:
        info.execution_time_seconds = execution
    if rec.method_name:
        info.service_method_name = rec.method_name
    return info


def _count_containers(
    resp: api_pb2.FunctionGetTimeRangeStatsResponse, tasks: Sequence[TaskOutcome], live: Mapping[str, TaskInfo]
) -> None:
    """Containers alive in the window: started (took an input, or asks for inputs now), errored, and still
    starting (live, not yet asking for inputs)."""

    def state(t: TaskOutcome) -> str:
        info = live.get(t.task.task_id)
        return info.state if info is not None else "stopped"

    resp.container_total_count = len(tasks)

    def started(t: TaskOutcome) -> bool:
        return t.first_input_at is not None or (state(t) != "starting" and not t.failed)

    resp.container_started_count = sum(1 for t in tasks if started(t))
    resp.container_error_count = sum(1 for t in tasks if t.failed)
    resp.container_creating_at_end_count = sum(1 for t in tasks if state(t) == "starting")


class FunctionInsights:
    def __init__(
        self,
        store: InsightStore,
        catalog: Catalog,
        tasks: TaskManager,
        clock: Clock,
        default_max_containers: int,
        default_scaledown_s: int,
        autoscaler: Autoscaler,
    ) -> None:
        self._store = store
        self._overrides = autoscaler.overrides
        self._on_update = autoscaler.note_warm
        self._catalog = catalog
        self._tasks = tasks
        self._clock = clock
        self._default_max = default_max_containers
        self._default_scaledown = default_scaledown_s

    async def function_ids(self, function_id: str, all_variants: bool) -> list[str]:
        """The function (NotFound if unknown) and, when asked, its variants."""
        await self._catalog.record(function_id)
        if not all_variants:
            return [function_id]
        return [function_id, *(v.function_id for v in await self._store.bound_functions(function_id))]

    async def app_of_task(self, task_id: str) -> str:
        """The app a container (live or ended) belongs to: following one container's logs names only it."""
        live = self._tasks.tasks.get(task_id)
        if live is not None:
            return live.app_id
        record = await self._store.get_task(task_id)
        if record is None:
            raise NotFound(f"Container {task_id} not found")
        return record.app_id

    async def scheduling_params(self, function_id: str) -> api_pb2.FunctionGetSchedulingParamsResponse:
        fn = await self._catalog.definition(function_id)
        static = static_settings(fn)
        current = await self._overrides.effective(function_id, fn)
        effective = api_pb2.AutoscalerSettings()
        effective.CopyFrom(current)
        effective.max_containers = max_containers(current, self._default_max)
        effective.scaledown_window = int(scaledown_window(current, self._default_scaledown))
        defaults = api_pb2.AutoscalerSettings(
            max_containers=self._default_max, scaledown_window=self._default_scaledown
        )
        config = api_pb2.AutoscalerConfiguration(settings=effective, default_settings=defaults, static_settings=static)
        override = self._overrides.configuration(function_id)
        if override is not None:
            config.override_settings.CopyFrom(override.override_settings)
            for name, event in override.override_events.items():
                config.override_events[name].CopyFrom(event)
        return api_pb2.FunctionGetSchedulingParamsResponse(autoscaler_configuration=config)

    async def update_scheduling_params(
        self, req: api_pb2.FunctionUpdateSchedulingParamsRequest, who: str
    ) -> api_pb2.FunctionUpdateSchedulingParamsResponse:
        """`Function.update_autoscaler`: the override takes effect at the autoscaler's next tick."""
        fn = await self._catalog.definition(req.function_id)
        update = api_pb2.AutoscalerSettings()
        update.CopyFrom(req.settings)
        if req.warm_pool_size_override and not update.HasField("min_containers"):
            update.min_containers = req.warm_pool_size_override
        await self._overrides.update(req.function_id, update, who, self._clock.now())
        self._on_update(req.function_id)
        current = await self._overrides.effective(req.function_id, fn)
        current.max_containers = max_containers(current, self._default_max)
        current.scaledown_window = int(scaledown_window(current, self._default_scaledown))
        return api_pb2.FunctionUpdateSchedulingParamsResponse(current_settings=current)

    async def fetch_calls(self, req: api_pb2.FunctionCallFetchRequest) -> api_pb2.FunctionCallFetchResponse:
        ids = await self.function_ids(req.function_id, req.all_variants)
        if req.HasField("range"):
            since, until = window(req.range.since, req.range.until, self._clock.now())
            limit = min(req.range.limit or MAX_TAIL, MAX_SCAN)
            found = await self._store.inputs_of_functions(ids, since, until, limit, newest_first=False)
        else:
            count = min(req.tail.count or 10, MAX_TAIL)
            found = await self._store.inputs_of_functions(ids, 0.0, self._clock.now() + 1, count, newest_first=True)
        return api_pb2.FunctionCallFetchResponse(function_call_inputs=[input_info(r) for r in found])

    async def count_calls(self, req: api_pb2.FunctionCallCountRequest) -> api_pb2.FunctionCallCountResponse:
        ids = await self.function_ids(req.function_id, req.all_variants)
        since, until = window(req.since, req.until, self._clock.now())
        width = req.bucket_secs or 3600
        starts = st.bucket_starts(since, until, width)  # InvalidArgument past 10 * MAX_BUCKETS
        counts = dict.fromkeys(starts, 0)
        for rec in await self._store.inputs_of_functions(ids, since, until, MAX_SCAN, newest_first=False):
            counts[starts[0] + (rec.created_at - starts[0]) // width * width] += 1
        buckets = [
            api_pb2.FunctionCallCountResponse.InputBucket(bucket_start_at=timestamp(start), count=n)
            for start, n in counts.items()
        ]
        return api_pb2.FunctionCallCountResponse(buckets=buckets)

    async def time_range_stats(
        self, req: api_pb2.FunctionGetTimeRangeStatsRequest
    ) -> api_pb2.FunctionGetTimeRangeStatsResponse:
        ids = await self.function_ids(req.function_id, req.rollup)
        since, until = window(req.since, req.until, self._clock.now())
        inputs = await self._store.inputs_of_functions(ids, since, until, MAX_SCAN, newest_first=False)
        tasks = await self._store.tasks_of_functions(ids, since, until)
        if req.HasField("container_id"):
            inputs = [r for r in inputs if r.holder == req.container_id]
            tasks = [t for t in tasks if t.task.task_id == req.container_id]
        outcomes = [st.outcome(r) for r in inputs]
        resp = api_pb2.FunctionGetTimeRangeStatsResponse(
            since=timestamp(since),
            until=timestamp(until),
            input_success_count=outcomes.count("succeeded"),
            input_failure_count=outcomes.count("failed"),
            input_timeout_count=outcomes.count("timed_out"),
            input_running_at_end_count=outcomes.count("open"),
            variant_count=len(await self._store.bound_functions(req.function_id)),
        )
        _count_containers(resp, tasks, self._tasks.tasks)
        for name, values in (
            ("Execution time (s)", [st.execution_s(r) for r in inputs]),
            ("End-to-end latency (s)", [st.latency_s(r) for r in inputs]),
        ):
            if (dist := st.distribution(values)) is not None:
                resp.input_percentile_stats[name].CopyFrom(dist)
        startup = [t.first_input_at - t.task.created_at for t in tasks if t.first_input_at is not None]
        if (dist := st.distribution(startup)) is not None:
            resp.container_percentile_stats["Startup time (s)"].CopyFrom(dist)
        return resp

    async def list_variants(self, req: api_pb2.FunctionListVariantsRequest) -> api_pb2.FunctionListVariantsResponse:
        """All variants in one page, busiest (most live containers) first."""
        await self._catalog.record(req.function_id)
        variants = await self._store.bound_functions(req.function_id)
        live = {v.function_id: len(self._tasks.of_function(v.function_id)) for v in variants}
        variants.sort(key=lambda v: -live[v.function_id])
        if req.limit:
            variants = variants[: req.limit]
        resp = api_pb2.FunctionListVariantsResponse(ordered_by_task_count=True)
        for v in variants:
            info = resp.infos.add(function_id=v.function_id, serialized_params=v.serialized_params)
            if v.options:
                info.function_options.ParseFromString(v.options)
        return resp

    async def current_stats(self, function_id: str) -> api_pb2.FunctionStats:
        await self._catalog.record(function_id)
        live = self._tasks.of_function(function_id)
        running = sum(t.inflight for t in live)
        return api_pb2.FunctionStats(
            backlog=len(await self._store.queued_inputs_of_function(function_id)),
            num_total_tasks=len(live),
            num_running_inputs=running,
            input_headroom=max(0, sum(t.slots for t in live if t.accepting) - running),
        )
