"""Usage over time: completed calls and containers started per bucket, per app, from the same per-window
stats `modal app stats` reads (CallInsights.app_stats)."""

from __future__ import annotations

from dataclasses import dataclass, field

from google.protobuf.timestamp_pb2 import Timestamp
from modal_proto import api_pb2

from berth.api.context import Services

WINDOWS_H = (1, 6, 24, 168)
_BUCKETS = 24


@dataclass
class Bucket:
    start: float
    calls: int = 0
    failed: int = 0
    containers: int = 0


@dataclass
class Usage:
    hours: int
    buckets: list[Bucket] = field(default_factory=list)

    @property
    def peak(self) -> int:
        return max([1] + [max(b.calls, b.containers) for b in self.buckets])

    @property
    def total_calls(self) -> int:
        return sum(b.calls for b in self.buckets)

    @property
    def total_containers(self) -> int:
        return sum(b.containers for b in self.buckets)


def _ts(seconds: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


async def usage(s: Services, app_ids: list[str], hours: int) -> Usage:
    hours = hours if hours in WINDOWS_H else 24
    now = s.clock.now()
    width = hours * 3600.0 / _BUCKETS
    out = Usage(hours, [Bucket(now - (_BUCKETS - i) * width) for i in range(_BUCKETS)])
    for app_id in app_ids:
        for bucket in out.buckets:
            req = api_pb2.AppGetTimeRangeStatsRequest(
                app_id=app_id, since=_ts(bucket.start), until=_ts(bucket.start + width)
            )
            total = (await s.call_insights.app_stats(req, now)).functions.total
            bucket.calls += total.calls.total
            bucket.failed += total.calls.failed
            bucket.containers += total.containers.container_active_count
    return out
