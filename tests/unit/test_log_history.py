"""Stored logs as clients page through them (the JS SDK's `logs.fetch()`): count buckets, then fetch each
bucket's range. Every counted entry must be in the range fetched for its bucket, and a filtered fetch must
not lose the entries asked for to other functions' entries. On the embedded SQLite store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from modal_proto import api_pb2

from berth.services.history import LogHistory
from berth.store.sqlite import SqliteStore
from berth.store.sqlite.deployments import DeploymentStore


def _ts(seconds: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def _batch(function_id: str, at: float, text: str) -> api_pb2.TaskLogsBatch:
    item = api_pb2.TaskLogs(data=text, timestamp=at, file_descriptor=api_pb2.FILE_DESCRIPTOR_STDOUT)
    return api_pb2.TaskLogsBatch(task_id="ta-1", function_id=function_id, items=[item])


@pytest.fixture
async def history(tmp_path: Path) -> AsyncIterator[LogHistory]:
    store = await SqliteStore.open(tmp_path / "db.sqlite")
    yield LogHistory(DeploymentStore(store.connection))
    await store.close()


async def test_each_counted_entry_lies_in_the_range_fetched_for_its_bucket(history: LogHistory) -> None:
    since = 1000.7  # a call created at a fraction of a second
    for k in range(20):
        history.record("ap-1", _batch("fu-1", since + k * 0.45, f"line {k}\n"))
    counted = await history.count(
        api_pb2.AppCountLogsRequest(app_id="ap-1", since=_ts(since), until=_ts(1020.0), bucket_secs=1), 1020.0
    )
    fetched: list[str] = []
    for bucket in counted.buckets:
        start = bucket.bucket_start_at.seconds
        req = api_pb2.AppFetchLogsRequest(app_id="ap-1", since=_ts(max(start, since)), until=_ts(start + 1), limit=1000)
        got = [b.items[0].data for b in (await history.fetch(req, 1020.0)).batches]
        assert len(got) == bucket.stdout_logs
        fetched += got
    assert fetched == [f"line {k}\n" for k in range(20)]


async def test_a_filtered_fetch_is_not_crowded_out_by_other_functions(history: LogHistory) -> None:
    history.record("ap-1", _batch("fu-wanted", 10.0, "wanted\n"))
    for k in range(300):
        history.record("ap-1", _batch("fu-chatty", 11.0 + k / 1000, f"noise {k}\n"))
    req = api_pb2.AppFetchLogsRequest(app_id="ap-1", since=_ts(0), until=_ts(100), limit=100, function_id="fu-wanted")
    assert [b.items[0].data for b in (await history.fetch(req, 100.0)).batches] == ["wanted\n"]
    unfiltered = api_pb2.AppFetchLogsRequest(app_id="ap-1", since=_ts(0), until=_ts(100), limit=100)
    assert len((await history.fetch(unfiltered, 100.0)).batches) == 100
