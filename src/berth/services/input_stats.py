"""Plain arithmetic behind the observability RPCs: percentiles of durations, time buckets, and how an
input's stored state reads in Modal's status vocabularies. No I/O."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from google.protobuf.timestamp_pb2 import Timestamp
from modal_proto import api_pb2

from berth.errors import InvalidArgument
from berth.store.records import InputRecord

GS = api_pb2.GenericResult
# The percentiles Modal's CLI shows (p50, p90, p99), in basis points.
PERCENTILES = (5000, 9000, 9900)
# The bucket widths `modal function metrics` accepts, in seconds.
BUCKET_WIDTHS = (60, 120, 180, 240, 300, 360, 600, 720, 900, 1200, 1800, 3600, 7200, 10800, 14400, 28800, 43200, 86400)
MAX_BUCKETS = 500
DEFAULT_WINDOW_S = 3600.0

_CALL_STATUS = {
    GS.GENERIC_STATUS_SUCCESS: api_pb2.FUNCTION_CALL_INPUT_STATUS_SUCCESS,
    GS.GENERIC_STATUS_FAILURE: api_pb2.FUNCTION_CALL_INPUT_STATUS_FAILURE,
    GS.GENERIC_STATUS_TERMINATED: api_pb2.FUNCTION_CALL_INPUT_STATUS_TERMINATED,
    GS.GENERIC_STATUS_TIMEOUT: api_pb2.FUNCTION_CALL_INPUT_STATUS_TIMEOUT,
    GS.GENERIC_STATUS_INIT_FAILURE: api_pb2.FUNCTION_CALL_INPUT_STATUS_INIT_FAILURE,
    GS.GENERIC_STATUS_INTERNAL_FAILURE: api_pb2.FUNCTION_CALL_INPUT_STATUS_INTERNAL_FAILURE,
    GS.GENERIC_STATUS_IDLE_TIMEOUT: api_pb2.FUNCTION_CALL_INPUT_STATUS_IDLE_TIMEOUT,
    GS.GENERIC_STATUS_MEMORY_MANAGER_EVICTION: api_pb2.FUNCTION_CALL_INPUT_STATUS_MEMORY_MANAGER_EVICTION,
    GS.GENERIC_STATUS_MEMORY_THRASHING_EVICTION: api_pb2.FUNCTION_CALL_INPUT_STATUS_MEMORY_THRASHING_EVICTION,
    GS.GENERIC_STATUS_KERNEL_OOM_KILL: api_pb2.FUNCTION_CALL_INPUT_STATUS_KERNEL_OOM_KILL,
}
TIMEOUTS = frozenset({GS.GENERIC_STATUS_TIMEOUT, GS.GENERIC_STATUS_IDLE_TIMEOUT})


def seconds(ts: Timestamp) -> float:
    return float(ts.seconds + ts.nanos / 1e9)


def timestamp(value: float) -> Timestamp:
    out = Timestamp()
    out.FromNanoseconds(int(value * 1e9))
    return out


def window(since: Timestamp, until: Timestamp, now: float) -> tuple[float, float]:
    """A request's [since, until): until defaults to now, since to an hour before until."""
    end = seconds(until) if until.seconds or until.nanos else now
    start = seconds(since) if since.seconds or since.nanos else end - DEFAULT_WINDOW_S
    if start >= end:
        raise InvalidArgument("`since` must be before `until`")
    return start, end


def call_status(rec: InputRecord) -> int:
    """An input's FunctionCallInputStatus: pending while queued, running while leased, else how it ended."""
    if rec.state == "queued":
        return api_pb2.FUNCTION_CALL_INPUT_STATUS_PENDING
    if rec.state == "leased":
        return api_pb2.FUNCTION_CALL_INPUT_STATUS_RUNNING
    return int(_CALL_STATUS.get(rec.status, api_pb2.FUNCTION_CALL_INPUT_STATUS_UNSPECIFIED))  # type: ignore[call-overload]


def outcome(rec: InputRecord) -> str:
    """'succeeded', 'timed_out', 'failed' for a finished input; 'open' while it is not."""
    if rec.state != "done":
        return "open"
    if rec.status == GS.GENERIC_STATUS_SUCCESS:
        return "succeeded"
    return "timed_out" if rec.status in TIMEOUTS else "failed"


def execution_s(rec: InputRecord) -> float | None:
    if rec.started_at is None or rec.finished_at is None:
        return None
    return max(0.0, rec.finished_at - rec.started_at)


def latency_s(rec: InputRecord) -> float | None:
    return None if rec.finished_at is None else max(0.0, rec.finished_at - rec.created_at)


def percentile(sorted_values: Sequence[float], basis_points: int) -> float:
    """Nearest-rank percentile of values sorted ascending (not empty)."""
    rank = math.ceil(basis_points / 10_000 * len(sorted_values))
    return sorted_values[min(len(sorted_values), max(1, rank)) - 1]


def distribution(values: Iterable[float | None], unit: str = "s") -> api_pb2.StatsPercentileDistribution | None:
    known = sorted(v for v in values if v is not None)
    if not known:
        return None
    return api_pb2.StatsPercentileDistribution(
        unit=unit,
        percentiles=[
            api_pb2.StatsPercentile(percentile_basis_points=bp, value=percentile(known, bp)) for bp in PERCENTILES
        ],
    )


def pick_bucket_secs(since: float, until: float, requested: int | None) -> int:
    """The requested width, or the narrowest allowed one that splits the range into at most about 100."""
    if requested:
        return requested
    span = max(1.0, until - since)
    for width in BUCKET_WIDTHS:
        if span / width <= 100:
            return width
    return BUCKET_WIDTHS[-1]


def bucket_starts(since: float, until: float, width: int, limit: int = 10 * MAX_BUCKETS) -> list[float]:
    """Bucket boundaries from `since` rounded down to a multiple of `width`, up to (not including) `until`.
    InvalidArgument past `limit` buckets, counted before any is made: a one-second bucket over a range of
    centuries (the RPC fuzzer's) built a list that took the server past the machine's memory."""
    if width <= 0:
        raise InvalidArgument(f"Bucket width must be a positive number of seconds, not {width}")
    start = math.floor(since / width) * width
    count = max(0, math.ceil((until - start) / width))
    if count > limit:
        raise InvalidArgument(f"{count} buckets of {width}s are too many (at most {limit}); use wider buckets")
    return [float(t) for t in range(int(start), int(math.ceil(until)), width)]


def whole_buckets(since: float, until: float, width: int) -> list[float]:
    """As Modal's metrics do: both bounds rounded down to bucket boundaries, so the partial bucket before
    `until` is left out."""
    return bucket_starts(since, math.floor(until / width) * width, width, MAX_BUCKETS)
