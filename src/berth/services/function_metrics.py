"""`modal function metrics`: time series of a function's calls and containers in fixed-width buckets
(MetricsGetInfo answers the schema, FunctionGetMetrics the samples), computed from the store's records
of inputs and containers. Berth records no CPU, memory, network or GPU samples, so it offers only the
'calls' and 'containers' groups and names the others as unavailable."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from modal_proto import api_pb2

from berth.errors import InvalidArgument
from berth.services import input_stats as st
from berth.services.catalog import Catalog
from berth.store.ports import ActivityStore, FunctionStore
from berth.store.records import InputRecord, TaskOutcome

MAX_SCAN = 100_000


class MetricsStore(ActivityStore, FunctionStore, Protocol):
    """Inputs and containers of functions and their variants."""


@dataclass(frozen=True)
class _Series:
    group: str
    name: str
    unit: str
    description: str


SERIES = (
    _Series("calls", "calls_enqueued_sum", "count", "Inputs enqueued in the bucket"),
    _Series("calls", "calls_succeeded_sum", "count", "Inputs enqueued in the bucket that succeeded"),
    _Series("calls", "calls_failed_sum", "count", "Inputs enqueued in the bucket that failed or timed out"),
    _Series("calls", "execution_time_avg", "seconds", "Mean execution time of the bucket's finished inputs"),
    _Series("calls", "execution_time_max", "seconds", "Longest execution time of the bucket's finished inputs"),
    _Series("containers", "containers_started_sum", "count", "Containers created in the bucket"),
    _Series("containers", "containers_active_max", "count", "Containers alive at some point in the bucket"),
    _Series("containers", "containers_errored_sum", "count", "Containers created in the bucket that failed"),
)
GROUPS = {"calls": "Function inputs and their durations", "containers": "Containers of the function"}


def _groups(requested: Sequence[str]) -> list[str]:
    unknown = [g for g in requested if g not in GROUPS]
    if unknown:
        raise InvalidArgument(
            f"Berth records no metrics of group {', '.join(map(repr, unknown))}; available: {', '.join(GROUPS)}"
        )
    return list(requested) or list(GROUPS)


def _bucketing(since: float, until: float, requested: int | None) -> tuple[int, list[float]]:
    width = st.pick_bucket_secs(since, until, requested)
    return width, st.whole_buckets(since, until, width)  # InvalidArgument past MAX_BUCKETS


def _in(start: float, width: int) -> Callable[[float], bool]:
    return lambda t: start <= t < start + width


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _value(name: str, inputs: list[InputRecord], tasks: list[TaskOutcome], start: float, width: int) -> float | None:
    inside = _in(start, width)
    enqueued = [r for r in inputs if inside(r.created_at)]
    finished = [r for r in inputs if r.finished_at is not None and inside(r.finished_at)]
    durations = [d for r in finished if (d := st.execution_s(r)) is not None]
    created = [t for t in tasks if inside(t.task.created_at)]
    values: dict[str, Callable[[], float | None]] = {
        "calls_enqueued_sum": lambda: len(enqueued),
        "calls_succeeded_sum": lambda: sum(1 for r in enqueued if st.outcome(r) == "succeeded"),
        "calls_failed_sum": lambda: sum(1 for r in enqueued if st.outcome(r) in ("failed", "timed_out")),
        "execution_time_avg": lambda: _mean(durations),
        "execution_time_max": lambda: max(durations, default=None),
        "containers_started_sum": lambda: len(created),
        "containers_errored_sum": lambda: sum(1 for t in created if t.failed),
        "containers_active_max": lambda: sum(
            1 for t in tasks if t.task.created_at < start + width and (t.task.ended_at or start) >= start
        ),
    }
    return values[name]()


class FunctionMetrics:
    def __init__(self, store: MetricsStore, catalog: Catalog) -> None:
        self._store = store
        self._catalog = catalog

    def schema(self, req: api_pb2.MetricsGetInfoRequest, now: float) -> api_pb2.MetricsGetInfoResponse:
        if req.target_type == api_pb2.MetricsGetInfoRequest.METRICS_TARGET_TYPE_SERVER:
            raise InvalidArgument("Berth has no Servers; metrics are available for Functions")
        since, until = st.window(req.since, req.until, now)
        width, starts = _bucketing(since, until, req.bucket_secs if req.HasField("bucket_secs") else None)
        resp = api_pb2.MetricsGetInfoResponse(bucket_secs=width, bucket_count=len(starts))
        for group in _groups(req.groups):
            definition = resp.groups.add(name=group, description=GROUPS[group])
            for s in SERIES:
                if s.group == group:
                    definition.metrics.add(name=s.name, unit=s.unit, description=s.description)
        return resp

    async def samples(self, req: api_pb2.FunctionGetMetricsRequest, now: float) -> api_pb2.FunctionGetMetricsResponse:
        await self._catalog.record(req.function_id)
        since, until = st.window(req.since, req.until, now)
        width, starts = _bucketing(since, until, req.bucket_secs if req.HasField("bucket_secs") else None)
        groups = _groups(req.groups)
        ids = [req.function_id]
        if req.rollup:
            ids += [v.function_id for v in await self._store.bound_functions(req.function_id)]
        begin, end = since // width * width, until // width * width
        inputs = await self._store.inputs_of_functions(ids, begin, end, MAX_SCAN, newest_first=False)
        tasks = await self._store.tasks_of_functions(ids, begin, end)
        resp = api_pb2.FunctionGetMetricsResponse(since=st.timestamp(begin), until=st.timestamp(end), bucket_secs=width)
        for s in SERIES:
            if s.group not in groups:
                continue
            series = resp.series.add(name=s.name, unit=s.unit, description=s.description)
            for start in starts:
                point = series.points.add(timestamp=st.timestamp(start))
                value = _value(s.name, inputs, tasks, start, width)
                if value is not None:
                    point.value = float(value)
        return resp
