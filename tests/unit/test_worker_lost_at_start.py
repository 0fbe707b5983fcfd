"""A worker that goes away while a container is being started on it: the function did nothing wrong, so its
queued inputs stay queued (to run on another worker) instead of failing with "Could not start container".
TaskManager on the embedded SQLite store, with a worker port whose worker is gone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest
from modal_proto import api_pb2

from berth.domain.spec import BuiltArguments, TaskSpec
from berth.scheduling.layout import LayoutBuilder
from berth.scheduling.tasks import TaskManager
from berth.services.catalog import Catalog
from berth.services.inputs import InputService
from berth.services.logs import LogBus
from berth.services.notify import Notifier
from berth.store.records import CallRecord, FunctionRecord
from berth.store.sqlite import SqliteStore
from berth.workers.port import NoCapacity, WorkerLost, WorkerPort


class FakeClock:
    def now(self) -> float:
        return 100.0

    def monotonic(self) -> float:
        return 100.0


class GoneWorker:
    """A worker port whose worker disconnects while it is asked to start a container."""

    started: list[str]

    def __init__(self) -> None:
        self.started = []

    async def start(self, spec: TaskSpec) -> None:
        self.started.append(spec.task_id)
        raise WorkerLost("worker w3 is gone: worker w3 disconnected")


class Layouts:
    async def container_arguments(self, function_id: str) -> BuiltArguments:
        fn = api_pb2.Function(function_name="f")
        return BuiltArguments(
            api_pb2.ContainerArguments(function_id=function_id, app_id="ap-1", function_def=fn), {}, []
        )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = await SqliteStore.open(tmp_path / "db.sqlite")
    yield s
    await s.close()


async def test_inputs_stay_queued_when_the_worker_is_lost_while_the_container_starts(store: SqliteStore) -> None:
    catalog = Catalog(store)
    await catalog.put(FunctionRecord("fu-1", "ap-1", "f", api_pb2.Function(function_name="f").SerializeToString()))
    notifier = Notifier()
    inputs = InputService(store, catalog, notifier, FakeClock())
    await store.create_call(CallRecord("fc-1", "fu-1", api_pb2.FUNCTION_CALL_TYPE_MAP, 3, False, 0, True, 1.0))
    await store.add_inputs("fc-1", "fu-1", [(f"in-{i}", i, "", b"p") for i in range(3)], now=1.0)
    worker = GoneWorker()
    tasks = TaskManager(
        store,
        cast(WorkerPort, worker),
        inputs,
        cast(LayoutBuilder, Layouts()),
        LogBus(),
        notifier,
        FakeClock(),
        "http://127.0.0.1:1",
    )
    with pytest.raises(NoCapacity, match="worker was lost"):
        await tasks.launch("fu-1")
    assert len(worker.started) == 1 and tasks.tasks == {}
    states: list[Any] = [await store.get_input(f"in-{i}") for i in range(3)]
    assert [s.state for s in states] == ["queued"] * 3
    assert await store.outputs_after("fc-1", 0, 10) == []
