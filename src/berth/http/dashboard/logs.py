"""Live logs of an app as Server-Sent Events: the stored history first (rendered in the page), then what
the log bus carries, filtered by function, container and call. A call's filter keeps the output of the
containers that ran its inputs: log lines carry no call id. The viewer's session is checked again each
time the bus goes quiet, so a revoked token's stream ends within one poll."""

from __future__ import annotations

import json
from dataclasses import dataclass

from aiohttp import web
from modal_proto import api_pb2

from berth.api.context import Services
from berth.services.dashboard_access import DashboardAccess

_POLL_S = 5.0
_HISTORY_LINES = 1000


@dataclass(frozen=True)
class LogFilter:
    function_id: str = ""
    task_id: str = ""
    call_id: str = ""

    @classmethod
    def of(cls, request: web.Request) -> LogFilter:
        q = request.query
        return cls(q.get("function", ""), q.get("task", ""), q.get("call", ""))


async def _call_tasks(s: Services, call_id: str) -> set[str] | None:
    if not call_id:
        return None
    return {r.holder for r in await s.stores.core.inputs_of_calls([call_id]) if r.holder}


def _lines(batch: api_pb2.TaskLogsBatch, tasks: set[str] | None) -> list[dict[str, object]]:
    if tasks is not None and batch.task_id not in tasks:
        return []
    return [
        {"t": item.timestamp, "fd": item.file_descriptor, "task": batch.task_id, "data": item.data}
        for item in batch.items
        if item.data
    ]


async def history(s: Services, app_id: str, flt: LogFilter) -> list[dict[str, object]]:
    req = api_pb2.AppFetchLogsRequest(
        app_id=app_id, function_id=flt.function_id, task_id=flt.task_id, limit=_HISTORY_LINES
    )
    stored = await s.log_history.fetch(req, s.clock.now())
    tasks = await _call_tasks(s, flt.call_id)
    return [line for batch in stored.batches for line in _lines(batch, tasks)]


async def stream(
    request: web.Request, s: Services, access: DashboardAccess, session: str, app_id: str, since: float
) -> web.StreamResponse:
    """Lines newer than `since` (the page's last history line) as `data:` events, until the app is done,
    the client leaves or the session stops being valid."""
    flt = LogFilter.of(request)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})
    await response.prepare(request)
    cursor = ""
    while await access.viewer(session) is not None:
        tasks = await _call_tasks(s, flt.call_id)  # a call's inputs may move to new containers
        async for batch in s.logs.follow(app_id, cursor, _POLL_S, flt.task_id, flt.function_id):
            cursor = batch.entry_id or cursor
            if batch.app_done:
                await response.write(b"event: done\ndata: {}\n\n")
                return response
            for line in _lines(batch, tasks):
                if float(str(line["t"])) > since:
                    # The id lets a reconnecting browser (Last-Event-ID) resume after the last line it has.
                    await response.write(f"id: {line['t']}\ndata: {json.dumps(line)}\n\n".encode())
        await response.write(b": keep-alive\n\n")
    await response.write(b"event: signed-out\ndata: {}\n\n")
    return response
