"""Contract of calls, inputs and their leases, outputs and data channels, on every backend. The
compare-and-set rules of store/ports.py are pinned here with concurrent claimers on two "replicas"."""

from __future__ import annotations

import asyncio

from berth.store.factory import Stores
from berth.store.ports import CoreStore
from berth.store.records import CallRecord, TaskRecord


async def _call(store: CoreStore, call_id: str = "fc-1", function_id: str = "fu-1", created: float = 0.0) -> None:
    await store.create_call(CallRecord(call_id, function_id, 2, 7, False, 0, False, created))


async def _enqueue(store: CoreStore, n: int, method: str = "", call_id: str = "fc-1") -> list[str]:
    ids = [f"in-{call_id}-{method}{i}" for i in range(n)]
    await store.add_inputs(call_id, "fu-1", [(iid, i, method, b"p%d" % i) for i, iid in enumerate(ids)], now=1.0)
    return ids


async def test_a_call_round_trips_and_counts_the_inputs_added_to_it(stores: Stores) -> None:
    core = stores.core
    await core.create_call(CallRecord("fc-1", "fu-1", 2, 7, True, 0, False, 5.0))
    await _enqueue(core, 3)
    assert await core.get_call("fc-1") == CallRecord("fc-1", "fu-1", 2, 7, True, 3, False, 5.0)
    await core.finish_call_inputs("fc-1")
    assert (await core.get_call("fc-1")).inputs_finished  # type: ignore[union-attr]
    await core.finish_call_inputs("fc-1", num_inputs=9)
    assert (await core.get_call("fc-1")).num_inputs == 9  # type: ignore[union-attr]
    assert await core.get_call("fc-missing") is None


async def test_claims_are_fifo_and_carry_the_payload_attempt_and_invocation_type(stores: Stores) -> None:
    core = stores.core
    await _call(core)
    ids = await _enqueue(core, 5)
    first = await core.claim_inputs("fu-1", "ta-a", 2, now=2.0, timeout_s=30.0)
    second = await core.claim_inputs("fu-1", "ta-b", 10, now=2.0, timeout_s=None)
    assert [lease.input_id for lease in first + second] == ids
    assert (first[0].payload, first[0].invocation_type, first[0].attempt) == (b"p0", 7, 0)
    assert (first[0].holder, first[0].deadline, second[0].deadline) == ("ta-a", 32.0, None)
    assert await core.claim_inputs("fu-1", "ta-c", 1, now=2.0, timeout_s=None) == []


async def test_restarted_leases_wait_without_a_deadline_then_start_when_taken_up(stores: Stores) -> None:
    core = stores.core
    await _call(core)
    ids = await _enqueue(core, 3)
    await core.claim_inputs("fu-1", "ta-a", 3, now=2.0, timeout_s=30.0)
    await core.restart_leases("ta-a", ids[1:], now=2.0, deadline=None)  # prefetched: waiting in the container
    assert [s.input_id for s in await core.expired_leases(now=1000.0)] == ids[:1]
    await core.restart_leases("ta-a", ids[1:2], now=50.0, deadline=80.0)  # taken up
    await core.restart_leases("ta-other", ids[2:], now=50.0, deadline=60.0)  # not its lease: unchanged
    assert [s.input_id for s in await core.expired_leases(now=90.0)] == ids[:2]
    started = await core.get_input(ids[1])
    assert started is not None and (started.state, started.holder) == ("leased", "ta-a")


async def test_a_claim_takes_nothing_of_another_function(stores: Stores) -> None:
    await _call(stores.core)
    await _enqueue(stores.core, 2)
    assert await stores.core.claim_inputs("fu-other", "ta-a", 5, now=2.0, timeout_s=None) == []


async def test_a_batched_claim_only_holds_inputs_of_the_method_at_the_head(stores: Stores) -> None:
    core = stores.core
    await _call(core)
    a = await _enqueue(core, 2, "a")
    b = await _enqueue(core, 2, "b")
    await core.add_inputs("fc-1", "fu-1", [("in-a-late", 9, "a", b"p")], now=1.0)
    assert [x.input_id for x in await core.claim_inputs("fu-1", "ta-a", 10, now=2.0, timeout_s=None)] == [
        *a,
        "in-a-late",
    ]
    assert [x.input_id for x in await core.claim_inputs("fu-1", "ta-b", 10, now=2.0, timeout_s=None)] == b


async def test_concurrent_claimers_on_two_replicas_never_get_the_same_input(stores: Stores, replica: Stores) -> None:
    await _call(stores.core)
    ids = await _enqueue(stores.core, 60)
    claims = [
        (stores if i % 2 else replica).core.claim_inputs("fu-1", f"ta-{i}", 3, now=2.0, timeout_s=None)
        for i in range(40)
    ]
    leases = [lease for batch in await asyncio.gather(*claims) for lease in batch]
    claimed = [lease.input_id for lease in leases]
    assert len(claimed) == len(set(claimed))
    assert sorted(claimed) == sorted(ids)
    for lease in leases:
        held = await stores.core.get_input(lease.input_id)
        assert held is not None and (held.state, held.holder) == ("leased", lease.holder)


async def test_a_foreign_holder_can_neither_finish_nor_requeue_a_lease(stores: Stores) -> None:
    core = stores.core
    await _call(core)
    await _enqueue(core, 1)
    (lease,) = await core.claim_inputs("fu-1", "ta-a", 1, now=2.0, timeout_s=None)
    assert await core.finish_input(lease.input_id, "ta-other", b"r", 1, now=3.0) is None
    assert await core.requeue_input(lease.input_id, 1, 0.0, holder="ta-other") is False
    state = await core.get_input(lease.input_id)
    assert state is not None and (state.state, state.holder, state.attempt) == ("leased", "ta-a", 0)
    assert await core.outputs_after("fc-1", 0, 10) == []


async def test_the_holder_finishes_a_lease_once_and_its_output_is_appended(stores: Stores) -> None:
    core = stores.core
    await _call(core)
    await _enqueue(core, 1)
    (lease,) = await core.claim_inputs("fu-1", "ta-a", 1, now=2.0, timeout_s=None)
    out = await core.finish_input(lease.input_id, "ta-a", b"result", 3, now=3.0)
    assert out is not None and (out.call_id, out.input_id, out.idx, out.result, out.data_format) == (
        "fc-1",
        lease.input_id,
        0,
        b"result",
        3,
    )
    assert await core.finish_input(lease.input_id, "ta-a", b"again", 3, now=3.0) is None
    assert await core.requeue_input(lease.input_id, 1, 0.0, holder="ta-a") is False
    assert [o.seq for o in await core.outputs_after("fc-1", 0, 10)] == [out.seq]
    assert await core.unfinished_count("fc-1") == 0


async def test_two_concurrent_finishes_of_one_lease_append_one_output(stores: Stores, replica: Stores) -> None:
    await _call(stores.core)
    await _enqueue(stores.core, 1)
    (lease,) = await stores.core.claim_inputs("fu-1", "ta-a", 1, now=2.0, timeout_s=None)
    results = await asyncio.gather(
        *[(stores, replica)[i % 2].core.finish_input(lease.input_id, "ta-a", b"r", 1, now=3.0) for i in range(8)]
    )
    assert sum(r is not None for r in results) == 1
    assert len(await stores.core.outputs_after("fc-1", 0, 10)) == 1


async def test_a_reader_paging_outputs_while_many_finish_concurrently_misses_none(
    stores: Stores, replica: Stores
) -> None:
    """Outputs are paged by seq; a seq that became visible after a higher one would be skipped for good.
    (On PostgreSQL a per-call lock orders them; the local cluster's maps caught the skip under load.)"""
    n = 400
    await _call(stores.core)
    await _enqueue(stores.core, n)
    leases = await stores.core.claim_inputs("fu-1", "ta-a", n, now=2.0, timeout_s=None)
    seen: list[str] = []

    async def read() -> None:
        cursor = 0
        for _ in range(5000):
            outs = await stores.core.outputs_after("fc-1", cursor, 3)
            seen.extend(o.input_id for o in outs)
            cursor = outs[-1].seq if outs else cursor
            if len(seen) >= n:
                return
            await asyncio.sleep(0.005 if not outs else 0)

    async def finish(i: int) -> None:
        await (stores, replica)[i % 2].core.finish_input(leases[i].input_id, "ta-a", b"r", 1, now=3.0)

    await asyncio.wait_for(asyncio.gather(read(), *(finish(i) for i in range(n))), 120)
    assert sorted(seen) == sorted(lease.input_id for lease in leases)


async def test_finishing_without_a_holder_closes_a_queued_or_leased_input(stores: Stores) -> None:
    core = stores.core
    await _call(core)
    queued, leased = await _enqueue(core, 2)
    await core.claim_inputs("fu-1", "ta-a", 1, now=2.0, timeout_s=None)
    assert await core.finish_input(queued, None, b"x", 1, now=3.0) is not None
    assert await core.finish_input(leased, None, b"y", 1, now=3.0) is not None
    assert await core.finish_input(leased, None, b"z", 1, now=3.0) is None
    assert [(o.input_id, o.result) for o in await core.outputs_after("fc-1", 0, 10)] == [(queued, b"x"), (leased, b"y")]


async def test_a_requeued_input_waits_for_its_retry_time_and_counts_the_attempt(stores: Stores) -> None:
    core = stores.core
    await _call(core)
    await _enqueue(core, 1)
    (lease,) = await core.claim_inputs("fu-1", "ta-a", 1, now=2.0, timeout_s=None)
    assert await core.requeue_input(lease.input_id, attempt=1, not_before=10.0, holder="ta-a") is True
    assert await core.claim_inputs("fu-1", "ta-b", 1, now=5.0, timeout_s=None) == []
    assert await core.queued_counts(now=5.0) == {}
    assert await core.has_future_inputs(now=5.0) == 10.0
    assert await core.queued_counts(now=10.0) == {"fu-1": 1}
    (again,) = await core.claim_inputs("fu-1", "ta-b", 1, now=11.0, timeout_s=None)
    assert (again.input_id, again.attempt, again.holder) == (lease.input_id, 1, "ta-b")
    assert await core.has_future_inputs(now=11.0) is None


async def test_requeue_without_a_holder_works_until_the_input_is_done(stores: Stores) -> None:
    core = stores.core
    await _call(core)
    (iid,) = await _enqueue(core, 1)
    await core.claim_inputs("fu-1", "ta-a", 1, now=2.0, timeout_s=None)
    assert await core.requeue_input(iid, 2, 0.0) is True
    await core.finish_input(iid, None, b"r", 1, now=3.0)
    assert await core.requeue_input(iid, 3, 0.0) is False


async def test_leases_with_a_timeout_expire_and_inputs_are_found_by_holder(stores: Stores) -> None:
    core = stores.core
    await _call(core)
    await _enqueue(core, 3)
    await core.claim_inputs("fu-1", "ta-a", 1, now=2.0, timeout_s=5.0)
    await core.claim_inputs("fu-1", "ta-b", 1, now=2.0, timeout_s=None)
    assert await core.expired_leases(now=6.0) == []
    assert [s.holder for s in await core.expired_leases(now=8.0)] == ["ta-a"]
    assert [s.idx for s in await core.inputs_held_by("ta-b")] == [1]
    assert [s.idx for s in await core.queued_inputs_of_function("fu-1")] == [2]
    assert sorted(s.idx for s in await core.open_inputs_of_call("fc-1")) == [0, 1, 2]


async def test_releasing_all_leases_puts_every_held_input_back(stores: Stores) -> None:
    core = stores.core
    await _call(core)
    await _enqueue(core, 3)
    await core.claim_inputs("fu-1", "ta-a", 2, now=2.0, timeout_s=5.0)
    assert await core.release_all_leases() == 2
    assert await core.inputs_held_by("ta-a") == []
    assert await core.queued_counts(now=2.0) == {"fu-1": 3}


async def test_outputs_are_read_after_a_cursor_and_deleted_by_seq(stores: Stores) -> None:
    core = stores.core
    await _call(core)
    ids = await _enqueue(core, 4)
    outs = [await core.finish_input(iid, None, b"r%d" % i, 1, now=3.0) for i, iid in enumerate(ids)]
    seqs = [o.seq for o in outs if o is not None]
    assert seqs == sorted(seqs)
    assert [o.idx for o in await core.outputs_after("fc-1", seqs[1], 10)] == [2, 3]
    assert [o.idx for o in await core.outputs_after("fc-1", 0, 2)] == [0, 1]
    await core.delete_outputs(seqs[:3])
    await core.delete_outputs([])
    assert [o.seq for o in await core.outputs_after("fc-1", 0, 10)] == [seqs[3]]


async def test_data_chunks_are_kept_once_per_index_and_read_after_an_index(stores: Stores) -> None:
    core = stores.core
    await core.put_chunks("fc-1", "in", [(1, b"a"), (2, b"b")])
    await core.put_chunks("fc-1", "in", [(2, b"dup"), (3, b"c")])
    await core.put_chunks("fc-1", "out", [(1, b"o")])
    await core.put_chunks("fc-1", "out", [])
    assert await core.chunks_after("fc-1", "in", 1) == [(2, b"b"), (3, b"c")]
    await core.drop_call_data("fc-1")
    assert await core.chunks_after("fc-1", "in", 0) == [] and await core.chunks_after("fc-1", "out", 0) == []


async def test_prune_forgets_only_finished_calls_ended_tasks_and_logs_older_than_the_cutoff(stores: Stores) -> None:
    core = stores.core
    await _call(core, "fc-old")
    (old,) = await _enqueue(core, 1, call_id="fc-old")
    await core.finish_input(old, None, b"r", 1, now=2.0)
    await core.put_chunks("fc-old", "out", [(1, b"x")])
    await _call(core, "fc-open")
    await _enqueue(core, 1, call_id="fc-open")
    await _call(core, "fc-new", created=50.0)
    await core.put_task(TaskRecord("ta-ended", "fu-1", "ap-1", "running", "h", 1.0))
    await core.end_task("ta-ended", "stopped", 2.0, None)
    await core.put_task(TaskRecord("ta-live", "fu-1", "ap-1", "running", "h", 1.0))
    stores.history.add_log_now("ap-1", 1.0, b"old")
    stores.history.add_log_now("ap-1", 60.0, b"new")
    await stores.history.logs_between("ap-1", 0.0, 100.0, 10)  # written before the prune
    assert await core.prune(before=10.0) == 1
    assert await core.get_call("fc-old") is None and await core.get_input(old) is None
    assert await core.outputs_after("fc-old", 0, 10) == [] and await core.chunks_after("fc-old", "out", 0) == []
    assert await core.get_call("fc-open") is not None and await core.get_call("fc-new") is not None
    assert await core.get_task("ta-ended") is None and await core.get_task("ta-live") is not None
    assert [b for _, b in await stores.history.logs_between("ap-1", 0.0, 100.0, 10)] == [b"new"]


async def test_a_cancellation_reaches_the_holder_once_and_never_a_later_one(stores: Stores, replica: Stores) -> None:
    core = stores.core
    await _call(core)
    ids = await _enqueue(core, 3)
    await core.claim_inputs("fu-1", "ta-a", 3, now=2.0, timeout_s=None)
    assert await replica.core.request_cancel(ids[0], "ta-a", terminate=False)
    assert await replica.core.request_cancel(ids[1], "ta-a", terminate=True)
    assert not await replica.core.request_cancel(ids[2], "ta-other", terminate=False)  # not its holder
    assert sorted(await core.take_cancels("ta-a")) == [(ids[0], False), (ids[1], True)]
    assert await core.take_cancels("ta-a") == []  # taken once
    await core.request_cancel(ids[2], "ta-a", terminate=False)
    await core.requeue_input(ids[2], 0, 0.0, "ta-a")
    await core.claim_inputs("fu-1", "ta-b", 1, now=3.0, timeout_s=None)
    assert await core.take_cancels("ta-b") == []  # asked of ta-a, not of whoever holds it next
    assert await core.take_cancels("ta-a") == []


async def test_outputs_can_be_read_for_a_range_of_input_indexes(stores: Stores) -> None:
    core = stores.core
    await _call(core)
    ids = await _enqueue(core, 6)
    for i in (4, 1, 5, 0, 3, 2):  # finished out of order
        await core.finish_input(ids[i], None, b"r%d" % i, 1, now=3.0)
    assert [o.idx for o in await core.outputs_after("fc-1", 0, 10, (2, 4))] == [4, 3, 2]  # commit order
    assert [o.result for o in await core.outputs_after("fc-1", 0, 10, (3, 3))] == [b"r3"]
    assert [o.idx for o in await core.outputs_after("fc-1", 0, 2, (0, 5))] == [4, 1]
    assert await core.outputs_after("fc-1", 0, 10, (7, 9)) == []
