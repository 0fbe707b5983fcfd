"""The dict contract, on every state backend: exact-bytes keys, all-or-nothing conditional puts, pops that
hand a value out once, insertion order, a capped length."""

from __future__ import annotations

import asyncio

from berth.store.ports import StateStore


async def test_a_written_entry_reads_back_and_pops_once(state: StateStore) -> None:
    assert await state.dict_put("di-1", [(b"k", b"v")], 1.0, only_new=False)
    assert await state.dict_get("di-1", b"k") == b"v"
    assert await state.dict_pop("di-1", b"k") == b"v"
    assert await state.dict_pop("di-1", b"k") is None
    assert await state.dict_get("di-1", b"k") is None


async def test_keys_are_compared_as_exact_bytes(state: StateStore) -> None:
    keys = [b"a", b"a\x00", b"\xff\xfe", b""]
    await state.dict_put("di-1", [(k, k + b"!") for k in keys], 1.0, only_new=False)
    for k in keys:
        assert await state.dict_get("di-1", k) == k + b"!"
    assert await state.dict_get("di-2", b"a") is None


async def test_a_conditional_put_writes_nothing_when_any_key_exists(state: StateStore) -> None:
    assert await state.dict_put("di-1", [(b"k", b"v1")], 1.0, only_new=True)
    assert not await state.dict_put("di-1", [(b"new", b"n"), (b"k", b"v2")], 1.0, only_new=True)
    assert await state.dict_get("di-1", b"k") == b"v1"
    assert await state.dict_get("di-1", b"new") is None
    assert await state.dict_put("di-1", [(b"k", b"v3")], 1.0, only_new=False)
    assert await state.dict_get("di-1", b"k") == b"v3"


async def test_of_concurrent_conditional_puts_of_one_key_exactly_one_wins(state: StateStore) -> None:
    results = await asyncio.gather(
        *(state.dict_put("di-1", [(b"lock", str(i).encode())], 1.0, only_new=True) for i in range(30))
    )
    assert sum(results) == 1
    winner = results.index(True)
    assert await state.dict_get("di-1", b"lock") == str(winner).encode()


async def test_entries_keep_insertion_order_and_a_rewritten_key_moves_last(state: StateStore) -> None:
    await state.dict_put("di-1", [(b"a", b"1"), (b"b", b"2"), (b"c", b"3")], 1.0, only_new=False)
    await state.dict_put("di-1", [(b"a", b"4")], 2.0, only_new=False)
    assert await state.dict_entries("di-1") == [(b"b", b"2"), (b"c", b"3"), (b"a", b"4")]
    assert await state.dict_entries("di-2") == []


async def test_length_is_capped_and_clear_empties_one_dict(state: StateStore) -> None:
    await state.dict_put("di-1", [(str(i).encode(), b"v") for i in range(12)], 1.0, only_new=False)
    await state.dict_put("di-2", [(b"x", b"y")], 1.0, only_new=False)
    assert await state.dict_len("di-1", 100) == 12
    assert await state.dict_len("di-1", 5) == 5
    await state.dict_clear("di-1")
    assert await state.dict_len("di-1", 100) == 0
    assert await state.dict_entries("di-2") == [(b"x", b"y")]
    assert await state.dict_put("di-1", [(b"again", b"1")], 1.0, only_new=True)
