"""Contract of state objects (volumes, secrets, dicts, queues) and of dict and queue contents."""

from __future__ import annotations

import asyncio

from berth.store.factory import Stores
from berth.store.records import StateObject


def _obj(object_id: str, name: str | None = "n", *, kind: str = "volume", **kw: object) -> StateObject:
    fields: dict[str, object] = {"ephemeral": False, "app_id": None, "version": 2, "body": None}
    fields.update(kw)
    return StateObject(object_id, kind, name, "main", created_at=1.0, heartbeat_at=1.0, **fields)  # type: ignore[arg-type]


async def test_a_state_object_is_found_by_id_and_by_name_within_its_kind_and_environment(stores: Stores) -> None:
    state = stores.state
    vol = _obj("vo-1", "data", body=b"\x00b", app_id="ap-1")
    await state.put(vol)
    assert await state.get("volume", "vo-1") == vol
    assert await state.get("secret", "vo-1") is None
    assert await state.by_name("volume", "main", "data") == vol
    assert await state.by_name("volume", "dev", "data") is None
    await state.set_body("vo-1", b"new")
    await state.rename("vo-1", "renamed")
    got = await state.by_name("volume", "main", "renamed")
    assert got is not None and got.body == b"new"


async def test_a_body_is_compared_and_set_only_from_the_body_that_was_read(stores: Stores) -> None:
    state = stores.state
    await state.put(_obj("vo-cas", "cas"))
    assert await state.set_body_if("vo-cas", b"other", b"v1") is False  # it has no body yet
    assert await state.set_body_if("vo-cas", None, b"v1") is True
    assert await state.set_body_if("vo-cas", None, b"v2") is False  # a second writer that read no body loses
    assert await state.set_body_if("vo-cas", b"v1", b"v2") is True
    assert await state.set_body_if("vo-missing", None, b"v1") is False
    got = await state.get("volume", "vo-cas")
    assert got is not None and got.body == b"v2"
    # Two writers race from the same body: exactly one wins.
    wins = await asyncio.gather(*(state.set_body_if("vo-cas", b"v2", f"w{i}".encode()) for i in range(8)))
    assert sum(wins) == 1


async def test_named_objects_are_listed_newest_first_before_a_time(stores: Stores) -> None:
    state = stores.state
    for i in range(4):
        obj = _obj(f"di-{i}", f"d{i}", kind="dict")
        obj.created_at = float(i)
        await state.put(obj)
    await state.put(_obj("di-anon", None, kind="dict"))
    listed = await state.list_named("dict", "main", created_before=3.0, limit=2)
    assert [o.object_id for o in listed] == ["di-2", "di-1"]


async def test_a_heartbeat_keeps_an_ephemeral_object_from_expiring(stores: Stores) -> None:
    state = stores.state
    await state.put(_obj("qu-1", None, kind="queue", ephemeral=True))
    await state.put(_obj("qu-2", None, kind="queue", ephemeral=True))
    await state.put(_obj("qu-named", "q", kind="queue"))
    assert await state.heartbeat("qu-1", 50.0) is True
    assert await state.heartbeat("qu-missing", 50.0) is False
    assert [o.object_id for o in await state.expired_ephemeral("queue", before=10.0)] == ["qu-2"]


async def test_deleting_an_object_drops_its_contents(stores: Stores) -> None:
    state = stores.state
    await state.put(_obj("di-1", "d", kind="dict"))
    await state.dict_put("di-1", [(b"k", b"v")], 1.0, only_new=False)
    await state.queue_push("di-1", b"", [b"x"], 1.0, 10, 100.0)
    await state.delete("di-1")
    assert await state.get("dict", "di-1") is None
    assert await state.dict_entries("di-1") == [] and await state.queue_len("di-1", None) == 0


async def test_dict_entries_keep_write_order_and_only_new_writes_nothing_when_a_key_exists(stores: Stores) -> None:
    state = stores.state
    assert await state.dict_put("di-1", [(b"a", b"1"), (b"b", b"2"), (b"c", b"3")], 1.0, only_new=False)
    assert await state.dict_put("di-1", [(b"a", b"10")], 2.0, only_new=False)
    assert await state.dict_entries("di-1") == [(b"b", b"2"), (b"c", b"3"), (b"a", b"10")]
    assert await state.dict_put("di-1", [(b"z", b"0"), (b"b", b"x")], 3.0, only_new=True) is False
    assert await state.dict_get("di-1", b"z") is None and await state.dict_get("di-1", b"b") == b"2"
    assert await state.dict_put("di-1", [(b"z", b"0")], 3.0, only_new=True) is True
    assert await state.dict_len("di-1", cap=2) == 2 and await state.dict_len("di-1", cap=100) == 4
    assert await state.dict_pop("di-1", b"a") == b"10"
    assert await state.dict_pop("di-1", b"a") is None
    await state.dict_clear("di-1")
    assert await state.dict_entries("di-1") == []


async def test_concurrent_only_new_puts_of_one_key_let_exactly_one_win(stores: Stores, replica: Stores) -> None:
    puts = [(stores, replica)[i % 2].state.dict_put("di-1", [(b"k", b"%d" % i)], 1.0, only_new=True) for i in range(10)]
    assert sum(await asyncio.gather(*puts)) == 1


async def test_a_queue_is_fifo_per_partition_and_a_full_partition_takes_no_part_of_a_put(stores: Stores) -> None:
    state = stores.state
    assert await state.queue_push("qu-1", b"", [b"1", b"2"], 1.0, 3, 100.0)
    assert await state.queue_push("qu-1", b"p", [b"x"], 1.0, 3, 100.0)
    assert await state.queue_push("qu-1", b"", [b"3", b"4"], 1.0, 3, 100.0) is False
    assert await state.queue_len("qu-1", b"") == 2 and await state.queue_len("qu-1", None) == 3
    assert await state.queue_stats("qu-1") == (2, 3)
    after = await state.queue_items_after("qu-1", b"", 0, 10)
    assert [v for _, v in after] == [b"1", b"2"]
    assert [v for _, v in await state.queue_items_after("qu-1", b"", after[0][0], 10)] == [b"2"]
    assert await state.queue_pop("qu-1", b"", 1) == [b"1"]
    assert await state.queue_pop("qu-1", b"", 5) == [b"2"]
    await state.queue_clear("qu-1", None)
    assert await state.queue_len("qu-1", None) == 0


async def test_concurrent_pops_never_hand_out_an_item_twice(stores: Stores, replica: Stores) -> None:
    await stores.state.queue_push("qu-1", b"", [b"%d" % i for i in range(30)], 1.0, 100, 100.0)
    pops = [(stores, replica)[i % 2].state.queue_pop("qu-1", b"", 2) for i in range(20)]
    popped = [v for batch in await asyncio.gather(*pops) for v in batch]
    assert sorted(popped) == sorted(b"%d" % i for i in range(30))


async def test_a_partition_is_cleared_its_ttl_after_the_last_put(stores: Stores) -> None:
    state = stores.state
    await state.queue_push("qu-1", b"a", [b"1"], 1.0, 10, 10.0)
    await state.queue_push("qu-1", b"b", [b"2"], 1.0, 10, 10.0)
    await state.queue_push("qu-1", b"b", [b"3"], 8.0, 10, 10.0)
    await state.queue_expire("qu-1", 12.0)
    assert await state.queue_len("qu-1", b"a") == 0 and await state.queue_len("qu-1", b"b") == 2


async def test_concurrent_puts_of_one_name_leave_one_object_and_fail_none(stores: Stores, replica: Stores) -> None:
    puts = [(stores, replica)[i % 2].state.put(_obj(f"vo-{i}", "shared")) for i in range(10)]
    await asyncio.gather(*puts)
    found = await stores.state.by_name("volume", "main", "shared")
    assert found is not None
    assert [i for i in range(10) if await stores.state.get("volume", f"vo-{i}")] == [int(found.object_id[3:])]
