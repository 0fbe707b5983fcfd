"""What FunctionCallGetInfo and FunctionCallFromId say about a call (the JS SDK's call logs read them), on the
embedded SQLite store with time passed in."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from modal_proto import api_pb2

from berth.errors import NotFound
from berth.services.calls import CallService
from berth.services.catalog import Catalog
from berth.services.inputs import InputService
from berth.services.notify import Notifier
from berth.store.records import CallRecord, FunctionRecord
from berth.store.sqlite import SqliteStore

GS = api_pb2.GenericResult


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


async def _finish(store: SqliteStore, statuses: list[int]) -> None:
    leases = await store.claim_inputs("fu-1", "ta-a", len(statuses), now=2.0, timeout_s=None)
    for lease, status in zip(leases, statuses, strict=True):
        await store.finish_input(lease.input_id, "ta-a", GS(status=status).SerializeToString(), 4, now=3.0)


async def test_info_counts_open_inputs_as_pending_and_finished_ones_by_status(
    store: SqliteStore, calls: CallService
) -> None:
    await _finish(store, [GS.GENERIC_STATUS_SUCCESS, GS.GENERIC_STATUS_TIMEOUT, GS.GENERIC_STATUS_FAILURE])
    info = await calls.info("fc-1", "")
    assert (info.function_call_id, info.created_at, info.total_inputs) == ("fc-1", 42.5, 4)
    assert info.pending_inputs.total == 1
    assert info.succeeded_inputs.total == 1
    assert info.timeout_inputs.total == 1
    assert info.failed_inputs.total == 1
    assert info.cancelled_inputs.total == 0


async def test_info_of_a_finished_call_adds_up_to_its_total(store: SqliteStore, calls: CallService) -> None:
    await _finish(store, [GS.GENERIC_STATUS_SUCCESS] * 3 + [GS.GENERIC_STATUS_TERMINATED])
    info = await calls.info("fc-1", "fu-1")
    assert info.pending_inputs.total == 0
    assert (info.succeeded_inputs.total, info.cancelled_inputs.total) == (3, 1)


async def test_outputs_a_client_cleared_fall_in_no_category(store: SqliteStore, calls: CallService) -> None:
    await _finish(store, [GS.GENERIC_STATUS_SUCCESS] * 2)
    outs = await store.outputs_after("fc-1", 0, 10)
    await store.delete_outputs([outs[0].seq])
    info = await calls.info("fc-1", "")
    assert (info.pending_inputs.total, info.succeeded_inputs.total, info.total_inputs) == (2, 1, 4)


async def test_info_refuses_an_unknown_call_or_another_functions_call(calls: CallService) -> None:
    with pytest.raises(NotFound):
        await calls.info("fc-nope", "")
    with pytest.raises(NotFound, match="not a call of fu-other"):
        await calls.info("fc-1", "fu-other")


async def test_from_id_names_the_calls_app_and_function(calls: CallService) -> None:
    resp = await calls.from_id("fc-1")
    assert (resp.num_inputs, resp.metadata.app_id, resp.metadata.function_id) == (4, "ap-1", "fu-1")
