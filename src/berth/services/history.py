"""Stored app logs for `modal app logs` without --follow: counts per time bucket and fetches."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp
from modal_proto import api_pb2

from berth.store.ports import LogStore

_MAX_FETCH = 10_000


def _seconds(ts: Timestamp, default: float) -> float:
    return ts.seconds + ts.nanos / 1e9 if (ts.seconds or ts.nanos) else default


class LogHistory:
    def __init__(self, store: LogStore) -> None:
        self._store = store

    def record(self, app_id: str, batch: api_pb2.TaskLogsBatch) -> None:
        # Runs inside the log pump: the insert is synchronous and short (see store/sqlite).
        self._store.add_log_now(app_id, batch.items[0].timestamp, batch.SerializeToString())

    async def fetch(self, req: api_pb2.AppFetchLogsRequest, now: float) -> api_pb2.AppFetchLogsResponse:
        since, until = _seconds(req.since, 0.0), _seconds(req.until, now)
        limit = min(req.limit or 100, _MAX_FETCH)
        filtered = bool(req.function_id or req.task_id or req.source or req.search_text)
        # The newest `limit` entries that pass the filters: with filters, read further back than `limit`, since
        # other functions' entries in the range would otherwise crowd out the ones asked for.
        rows = await self._store.logs_between(req.app_id, since, until, _MAX_FETCH * 10 if filtered else limit)
        batches = [api_pb2.TaskLogsBatch.FromString(raw) for _, raw in rows]
        matching = [b for b in batches if _matches(b, req.function_id, req.task_id, req.source, req.search_text)]
        resp = api_pb2.AppFetchLogsResponse()
        resp.batches.extend(matching[-limit:])
        return resp

    async def count(self, req: api_pb2.AppCountLogsRequest, now: float) -> api_pb2.AppCountLogsResponse:
        since, until = _seconds(req.since, 0.0), _seconds(req.until, now)
        width = max(1, req.bucket_secs or 60)
        buckets: dict[int, list[int]] = {}
        for _, raw in await self._store.logs_between(req.app_id, since, until, _MAX_FETCH * 10):
            batch = api_pb2.TaskLogsBatch.FromString(raw)
            if not _matches(batch, req.function_id, req.task_id, req.source, req.search_text):
                continue
            item = batch.items[0]
            # Buckets on whole multiples of the width: a bucket's start is then exact in whole seconds, and the
            # range a client fetches for it, [start, start + width), holds every entry it counted.
            start = int(item.timestamp // width)
            counts = buckets.setdefault(start, [0, 0])
            counts[0 if item.file_descriptor == api_pb2.FILE_DESCRIPTOR_STDOUT else 1] += 1
        resp = api_pb2.AppCountLogsResponse(app_id=req.app_id)
        for start, (out, err) in sorted(buckets.items()):
            bucket = resp.buckets.add(stdout_logs=out, stderr_logs=err)
            bucket.bucket_start_at.FromSeconds(start * width)
        return resp


def _matches(batch: api_pb2.TaskLogsBatch, function_id: str, task_id: str, source: int, search: str) -> bool:
    item = batch.items[0]
    if function_id and batch.function_id != function_id:
        return False
    if task_id and batch.task_id != task_id:
        return False
    if source and item.file_descriptor != source:
        return False
    return not search or search in item.data
