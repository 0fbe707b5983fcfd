"""Batched map polls: a map's FunctionGetOutputs that finds a few outputs waits a moment for more, so that one
reply carries many; a poll that asks not to wait (timeout 0) and a unary call's poll answer with what is
there. On the embedded SQLite store, with the real notifier."""

from __future__ import annotations

import asyncio
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

MAP, UNARY = api_pb2.FUNCTION_CALL_TYPE_MAP, api_pb2.FUNCTION_CALL_TYPE_UNARY
OK = api_pb2.GenericResult(status=api_pb2.GenericResult.GENERIC_STATUS_SUCCESS)


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
async def services(store: SqliteStore) -> tuple[CallService, InputService]:
    catalog = Catalog(store)
    await catalog.put(FunctionRecord("fu-1", "ap-1", "f", api_pb2.Function(function_name="f").SerializeToString()))
    notifier = Notifier()
    inputs = InputService(store, catalog, notifier, FakeClock())
    for call_id, call_type in (("fc-map", MAP), ("fc-unary", UNARY)):
        await store.create_call(CallRecord(call_id, "fu-1", call_type, 3, False, 0, True, 1.0))
        await store.add_inputs(call_id, "fu-1", [(f"{call_id}-in-{i}", i, "", b"p") for i in range(4)], now=1.0)
    return CallService(store, catalog, inputs, notifier, FakeClock(), max_object_bytes=1024), inputs


async def _poll_while_finishing(
    services: tuple[CallService, InputService], call_id: str, timeout: float
) -> api_pb2.FunctionGetOutputsResponse:
    """Finishes input 0, starts a poll, and finishes inputs 1 and 2 while the poll is under way."""
    calls, inputs = services
    await inputs.finish(f"{call_id}-in-0", None, OK, api_pb2.DATA_FORMAT_PICKLE)
    poll = asyncio.create_task(
        calls.get_outputs(api_pb2.FunctionGetOutputsRequest(function_call_id=call_id, timeout=timeout))
    )
    await asyncio.sleep(0)  # the poll has read input 0's output
    for i in (1, 2):
        await inputs.finish(f"{call_id}-in-{i}", None, OK, api_pb2.DATA_FORMAT_PICKLE)
    return await poll


async def test_a_map_poll_waits_briefly_and_carries_the_outputs_that_arrive_meanwhile(
    services: tuple[CallService, InputService],
) -> None:
    resp = await _poll_while_finishing(services, "fc-map", timeout=5)
    assert [o.idx for o in resp.outputs] == [0, 1, 2]
    assert resp.last_entry_id != "0-0"


async def test_a_poll_that_may_not_wait_answers_with_what_is_there(
    services: tuple[CallService, InputService],
) -> None:
    resp = await _poll_while_finishing(services, "fc-map", timeout=0)
    assert [o.idx for o in resp.outputs] == [0]


async def test_a_unary_calls_poll_never_waits_for_more(services: tuple[CallService, InputService]) -> None:
    resp = await _poll_while_finishing(services, "fc-unary", timeout=5)
    assert [o.idx for o in resp.outputs] == [0]
