"""Per-app log streams: container output and task states, replayable from an entry id."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from modal_proto import api_pb2

from berth.services.notify import Notifier
from berth.store.ports import LogFanout

_KEEP_BATCHES = 5000


@dataclass
class _AppLog:
    batches: deque[api_pb2.TaskLogsBatch] = field(default_factory=lambda: deque(maxlen=_KEEP_BATCHES))
    next_entry: int = 1
    done: bool = False
    # Bumped when a detached app's client leaves: streams opened before it end, later ones follow on.
    epoch: int = 0


LogSink = Callable[[str, api_pb2.TaskLogsBatch], None]


class LogBus:
    """Live fan-out of an app's logs. Output (not state changes) also goes to `sink` for history."""

    def __init__(self, sink: LogSink | None = None) -> None:
        self._apps: dict[str, _AppLog] = {}
        self._notifier = Notifier()
        self._sink = sink
        self._fanout: LogFanout | None = None

    async def share(self, fanout: LogFanout) -> None:
        """Exchange live batches with the other server replicas: a client following an app on this replica
        sees the output of containers joined to another one."""
        await fanout.start_fanout(self._from_other_replica)
        self._fanout = fanout

    async def close(self) -> None:
        if self._fanout is not None:
            await self._fanout.close()

    def _from_other_replica(self, app_id: str, payload: bytes) -> None:
        try:
            batch = api_pb2.TaskLogsBatch.FromString(payload)
        except Exception:
            return
        if batch.app_done:
            self._done(app_id)
        else:
            self._append(app_id, batch, shared=False)

    def _app(self, app_id: str) -> _AppLog:
        return self._apps.setdefault(app_id, _AppLog())

    def _append(self, app_id: str, batch: api_pb2.TaskLogsBatch, shared: bool = True) -> None:
        if shared and self._fanout is not None:
            self._fanout.publish_batch(app_id, batch.SerializeToString())  # entry ids are each replica's own
        log = self._app(app_id)
        batch.entry_id = str(log.next_entry)
        log.next_entry += 1
        log.batches.append(batch)
        self._notifier.notify(app_id)

    def output(self, app_id: str, task_id: str, function_id: str, fd: int, data: str) -> None:
        item = api_pb2.TaskLogs(data=data, file_descriptor=fd, timestamp=time.time())  # type: ignore[arg-type]
        batch = api_pb2.TaskLogsBatch(task_id=task_id, function_id=function_id, items=[item])
        self._append(app_id, batch)
        if self._sink is not None:
            self._sink(app_id, batch)

    def task_state(self, app_id: str, task_id: str, function_id: str, state: int) -> None:
        item = api_pb2.TaskLogs(task_state=state, timestamp=time.time())  # type: ignore[arg-type]
        self._append(app_id, api_pb2.TaskLogsBatch(task_id=task_id, function_id=function_id, items=[item]))

    def waiting(self, app_id: str, function_id: str, reason: str) -> None:
        """Tell the client why a function's inputs stay queued: a line in its log and the text of its
        queueing progress bar (shown by `modal run` on a terminal)."""
        now = time.time()
        line = api_pb2.TaskLogs(data=reason + "\n", file_descriptor=api_pb2.FILE_DESCRIPTOR_INFO, timestamp=now)
        progress = api_pb2.TaskProgress(len=1, pos=0, progress_type=api_pb2.FUNCTION_QUEUED, description=reason)
        bar = api_pb2.TaskLogs(task_progress=progress, timestamp=now)
        batch = api_pb2.TaskLogsBatch(function_id=function_id, items=[line, bar])
        self._append(app_id, batch)
        if self._sink is not None:
            self._sink(app_id, batch)

    def app_done(self, app_id: str) -> None:
        if self._fanout is not None:
            self._fanout.publish_batch(app_id, api_pb2.TaskLogsBatch(app_done=True).SerializeToString())
        self._done(app_id)

    def _done(self, app_id: str) -> None:
        self._app(app_id).done = True
        self._notifier.notify(app_id)

    def release_followers(self, app_id: str) -> None:
        """End the streams that are open now (the detaching client's) without ending the app's log."""
        self._app(app_id).epoch += 1
        self._notifier.notify(app_id)

    async def follow(
        self, app_id: str, last_entry_id: str, timeout: float, task_id: str = "", function_id: str = ""
    ) -> AsyncIterator[api_pb2.TaskLogsBatch]:
        """Yield batches after last_entry_id until the app is done or `timeout` passes without one; with
        `task_id` or `function_id`, only that container's or that function's batches."""
        log = self._app(app_id)
        epoch = log.epoch
        cursor = int(last_entry_id) if last_entry_id.isdigit() else 0
        deadline = time.monotonic() + timeout
        while True:
            with self._notifier.listen(app_id) as waiter:
                fresh = [b for b in log.batches if int(b.entry_id) > cursor]
                for batch in fresh:
                    cursor = int(batch.entry_id)
                    if (not task_id or batch.task_id == task_id) and (
                        not function_id or batch.function_id == function_id
                    ):
                        yield batch
                if log.done or log.epoch != epoch:
                    yield api_pb2.TaskLogsBatch(app_done=True, entry_id=str(cursor))
                    return
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not await waiter.wait(remaining):
                    return
