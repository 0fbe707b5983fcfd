"""The queue contract, on every state backend: FIFO partitions, all-or-nothing pushes under a cap that holds
against concurrent pushers, pops that never hand one item to two poppers, stable entry ids for iteration,
expiry a TTL after the last put."""

from __future__ import annotations

import asyncio

from berth.store.ports import StateStore


async def test_each_partition_is_fifo_and_independent(state: StateStore) -> None:
    assert await state.queue_push("qu-1", b"", [b"1", b"2", b"3"], 1.0, max_items=10, ttl_s=60)
    assert await state.queue_push("qu-1", b"p", [b"x"], 1.0, max_items=10, ttl_s=60)
    assert await state.queue_pop("qu-1", b"", 2) == [b"1", b"2"]
    assert await state.queue_pop("qu-1", b"p", 5) == [b"x"]
    assert await state.queue_pop("qu-1", b"", 5) == [b"3"]
    assert await state.queue_pop("qu-1", b"", 5) == []
    assert await state.queue_pop("qu-2", b"", 5) == []


async def test_equal_values_stay_separate_items(state: StateStore) -> None:
    assert await state.queue_push("qu-1", b"", [b"same", b"same", b""], 1.0, max_items=10, ttl_s=60)
    assert await state.queue_len("qu-1", b"") == 3
    assert await state.queue_pop("qu-1", b"", 5) == [b"same", b"same", b""]


async def test_a_full_partition_takes_no_part_of_a_push(state: StateStore) -> None:
    assert await state.queue_push("qu-1", b"", [b"1", b"2"], 0.0, max_items=3, ttl_s=60)
    assert not await state.queue_push("qu-1", b"", [b"3", b"4"], 0.0, max_items=3, ttl_s=60)
    assert await state.queue_push("qu-1", b"p", [b"x"], 0.0, max_items=3, ttl_s=60)
    assert await state.queue_len("qu-1", b"") == 2
    assert await state.queue_len("qu-1", None) == 3
    assert await state.queue_stats("qu-1") == (2, 3)


async def test_concurrent_pushers_never_take_a_partition_past_its_cap(state: StateStore) -> None:
    results = await asyncio.gather(
        *(state.queue_push("qu-1", b"", [b"%d" % i, b"+"], 0.0, max_items=21, ttl_s=60) for i in range(40))
    )
    assert sum(results) == 10
    assert await state.queue_len("qu-1", b"") == 20


async def test_concurrent_poppers_never_get_the_same_item(state: StateStore) -> None:
    values = [b"%d" % i for i in range(300)]
    assert await state.queue_push("qu-1", b"", values, 0.0, max_items=1000, ttl_s=60)

    async def drain() -> list[bytes]:
        got: list[bytes] = []
        while batch := await state.queue_pop("qu-1", b"", 7):
            got += batch
            await asyncio.sleep(0)
        return got

    taken = await asyncio.gather(*(drain() for _ in range(12)))
    everything = [v for got in taken for v in got]
    assert sorted(everything) == sorted(values)
    for got in taken:
        assert got == sorted(got, key=int)  # each popper sees queue order


async def test_entry_ids_are_stable_and_increase_across_pops_and_clears(state: StateStore) -> None:
    await state.queue_push("qu-1", b"", [b"a", b"b", b"c"], 0.0, max_items=10, ttl_s=60)
    rows = await state.queue_items_after("qu-1", b"", 0, 10)
    assert [v for _, v in rows] == [b"a", b"b", b"c"]
    (sa, _), (sb, _), (sc, _) = rows
    assert 0 < sa < sb < sc
    assert await state.queue_items_after("qu-1", b"", sa, 1) == [(sb, b"b")]
    assert await state.queue_pop("qu-1", b"", 1) == [b"a"]
    assert await state.queue_items_after("qu-1", b"", 0, 10) == [(sb, b"b"), (sc, b"c")]
    assert await state.queue_items_after("qu-1", b"", sc, 10) == []
    await state.queue_clear("qu-1", None)
    await state.queue_push("qu-1", b"", [b"d"], 0.0, max_items=10, ttl_s=60)
    [(sd, d)] = await state.queue_items_after("qu-1", b"", sc, 10)
    assert d == b"d" and sd > sc


async def test_a_partition_expires_its_ttl_after_the_last_push(state: StateStore) -> None:
    await state.queue_push("qu-1", b"s", [b"1"], 100.0, max_items=10, ttl_s=10)
    await state.queue_push("qu-1", b"", [b"kept"], 100.0, max_items=10, ttl_s=1000)
    await state.queue_push("qu-1", b"s", [b"2"], 109.0, max_items=10, ttl_s=10)
    await state.queue_expire("qu-1", 118.5)
    assert await state.queue_len("qu-1", b"s") == 2
    await state.queue_expire("qu-1", 119.5)
    assert await state.queue_len("qu-1", b"s") == 0
    assert await state.queue_pop("qu-1", b"", 5) == [b"kept"]
    assert await state.queue_push("qu-1", b"s", [b"3"], 120.0, max_items=10, ttl_s=10)
    assert await state.queue_pop("qu-1", b"s", 5) == [b"3"]


async def test_clear_empties_one_partition_or_all(state: StateStore) -> None:
    for partition in (b"", b"a", b"b"):
        await state.queue_push("qu-1", partition, [b"x", b"y"], 0.0, max_items=10, ttl_s=60)
    await state.queue_push("qu-2", b"", [b"other"], 0.0, max_items=10, ttl_s=60)
    await state.queue_clear("qu-1", b"a")
    assert await state.queue_stats("qu-1") == (2, 4)
    await state.queue_clear("qu-1", None)
    assert await state.queue_stats("qu-1") == (0, 0)
    assert await state.queue_len("qu-1", None) == 0
    assert await state.queue_len("qu-2", None) == 1
