"""Contract of the store's input leases, run against the embedded SQLite backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from berth.store.records import CallRecord
from berth.store.sqlite import SqliteStore


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = await SqliteStore.open(tmp_path / "db.sqlite")
    await s.create_call(CallRecord("fc-1", "fu-1", 2, 1, False, 0, False, 0.0))
    yield s
    await s.close()


async def _enqueue(store: SqliteStore, n: int, method: str = "") -> None:
    await store.add_inputs("fc-1", "fu-1", [(f"in-{method}{i}", i, method, b"p") for i in range(n)], now=1.0)


async def test_claims_are_fifo_and_never_hand_out_an_input_twice(store: SqliteStore) -> None:
    await _enqueue(store, 5)
    first = await store.claim_inputs("fu-1", "ta-a", 2, now=2.0, timeout_s=None)
    second = await store.claim_inputs("fu-1", "ta-b", 10, now=2.0, timeout_s=None)
    assert [lease.idx for lease in first] == [0, 1]
    assert [lease.idx for lease in second] == [2, 3, 4]
    assert await store.claim_inputs("fu-1", "ta-c", 1, now=2.0, timeout_s=None) == []


async def test_a_batch_only_holds_inputs_of_one_method(store: SqliteStore) -> None:
    await _enqueue(store, 2, "a")
    await _enqueue(store, 2, "b")
    batch = await store.claim_inputs("fu-1", "ta-a", 4, now=2.0, timeout_s=None)
    assert [lease.input_id for lease in batch] == ["in-a0", "in-a1"]


async def test_only_the_holder_can_finish_a_lease(store: SqliteStore) -> None:
    await _enqueue(store, 1)
    (lease,) = await store.claim_inputs("fu-1", "ta-a", 1, now=2.0, timeout_s=None)
    assert await store.finish_input(lease.input_id, "ta-other", b"r", 1, now=3.0) is None
    out = await store.finish_input(lease.input_id, "ta-a", b"r", 1, now=3.0)
    assert out is not None and out.idx == 0
    assert await store.finish_input(lease.input_id, "ta-a", b"r", 1, now=3.0) is None
    assert [o.input_id for o in await store.outputs_after("fc-1", 0, 10)] == [lease.input_id]
    assert await store.unfinished_count("fc-1") == 0


async def test_requeued_input_waits_for_its_retry_time_and_counts_the_attempt(store: SqliteStore) -> None:
    await _enqueue(store, 1)
    (lease,) = await store.claim_inputs("fu-1", "ta-a", 1, now=2.0, timeout_s=None)
    await store.requeue_input(lease.input_id, attempt=1, not_before=10.0)
    assert await store.claim_inputs("fu-1", "ta-b", 1, now=5.0, timeout_s=None) == []
    (again,) = await store.claim_inputs("fu-1", "ta-b", 1, now=11.0, timeout_s=None)
    assert (again.input_id, again.attempt, again.holder) == (lease.input_id, 1, "ta-b")


async def test_leases_with_a_timeout_expire(store: SqliteStore) -> None:
    await _enqueue(store, 2)
    await store.claim_inputs("fu-1", "ta-a", 1, now=2.0, timeout_s=5.0)
    await store.claim_inputs("fu-1", "ta-b", 1, now=2.0, timeout_s=None)
    assert await store.expired_leases(now=6.0) == []
    assert [s.holder for s in await store.expired_leases(now=8.0)] == ["ta-a"]


async def test_state_survives_reopening_the_database(tmp_path: Path) -> None:
    s = await SqliteStore.open(tmp_path / "db.sqlite")
    await s.create_call(CallRecord("fc-9", "fu-9", 1, 1, False, 0, True, 0.0))
    await s.add_inputs("fc-9", "fu-9", [("in-9", 0, "", b"payload")], now=1.0)
    await s.close()
    reopened = await SqliteStore.open(tmp_path / "db.sqlite")
    state = await reopened.get_input("in-9")
    assert state is not None and (state.state, state.payload) == ("queued", b"payload")
    await reopened.close()


async def test_prune_forgets_only_finished_calls_older_than_the_cutoff(store: SqliteStore) -> None:
    await _enqueue(store, 2)
    await store.create_call(CallRecord("fc-old", "fu-1", 1, 1, False, 0, True, 0.0))
    await store.add_inputs("fc-old", "fu-1", [("in-old", 0, "", b"p")], now=1.0)
    for lease in await store.claim_inputs("fu-1", "ta-a", 5, now=2.0, timeout_s=None):
        await store.finish_input(lease.input_id, "ta-a", b"r", 1, now=3.0)
    await store.create_call(CallRecord("fc-open", "fu-1", 1, 1, False, 0, True, 0.0))
    await store.add_inputs("fc-open", "fu-1", [("in-open", 0, "", b"p")], now=1.0)
    assert await store.prune(before=10.0) == 2
    assert await store.get_call("fc-old") is None and await store.get_call("fc-1") is None
    assert await store.get_call("fc-open") is not None
    assert await store.outputs_after("fc-old", 0, 10) == []
