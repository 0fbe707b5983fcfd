"""What FunctionCallFromId says about a call (the JS SDK's call logs read its app and function), on the
embedded SQLite store with time passed in."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from modal_proto import api_pb2

from berth.services.calls import CallService
from berth.services.catalog import Catalog
from berth.services.inputs import InputService
from berth.services.notify import Notifier
from berth.store.records import CallRecord, FunctionRecord
from berth.store.sqlite import SqliteStore


class FakeClock:
    def now(self) -> float:
        return 100.0

    def monotonic(self) -> float:
        return 100.0


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = await SqliteStore.open(tmp_path / "db.sqlite")
    yield s
    await s.close()


@pytest.fixture
async def calls(store: SqliteStore) -> CallService:
    catalog = Catalog(store)
    await catalog.put(FunctionRecord("fu-1", "ap-1", "f", api_pb2.Function(function_name="f").SerializeToString()))
    inputs = InputService(store, catalog, Notifier(), FakeClock())
    await store.create_call(CallRecord("fc-1", "fu-1", 2, 3, False, 0, True, 42.5))
    await store.add_inputs("fc-1", "fu-1", [(f"in-{i}", i, "", b"p") for i in range(4)], now=1.0)
    return CallService(store, catalog, inputs, Notifier(), FakeClock(), max_object_bytes=1024)


async def test_from_id_names_the_calls_app_and_function(calls: CallService) -> None:
    resp = await calls.from_id("fc-1")
    assert (resp.num_inputs, resp.metadata.app_id, resp.metadata.function_id) == (4, "ap-1", "fu-1")
