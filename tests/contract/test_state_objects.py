"""State objects on every backend, and the rule that deleting one drops its contents wherever they live."""

from __future__ import annotations

from berth.store.ports import StateStore
from berth.store.records import StateObject


def _obj(object_id: str, kind: str, name: str | None = None) -> StateObject:
    return StateObject(object_id, kind, name, "main", name is None, None, 1, None, 10.0, 10.0)


async def test_objects_are_found_by_id_and_by_name(state: StateStore) -> None:
    await state.put(_obj("di-1", "dict", "named"))
    await state.put(_obj("di-2", "dict"))
    assert await state.get("dict", "di-1") == _obj("di-1", "dict", "named")
    assert await state.by_name("dict", "main", "named") == _obj("di-1", "dict", "named")
    assert await state.get("queue", "di-1") is None
    assert [o.object_id for o in await state.list_named("dict", "main", 11.0, 10)] == ["di-1"]
    assert await state.heartbeat("di-2", 50.0)
    assert [o.object_id for o in await state.expired_ephemeral("dict", 40.0)] == []
    assert [o.object_id for o in await state.expired_ephemeral("dict", 60.0)] == ["di-2"]


async def test_deleting_an_object_drops_its_contents_and_no_others(state: StateStore) -> None:
    for object_id, kind in (("di-1", "dict"), ("qu-1", "queue"), ("di-2", "dict"), ("qu-2", "queue")):
        await state.put(_obj(object_id, kind))
    for dict_id in ("di-1", "di-2"):
        await state.dict_put(dict_id, [(b"k", b"v")], 1.0, only_new=False)
    for queue_id in ("qu-1", "qu-2"):
        await state.queue_push(queue_id, b"p", [b"x"], 1.0, max_items=10, ttl_s=60)
    await state.delete("di-1")
    await state.delete("qu-1")
    assert await state.get("dict", "di-1") is None and await state.get("queue", "qu-1") is None
    assert await state.dict_entries("di-1") == []
    assert await state.queue_stats("qu-1") == (0, 0)
    assert await state.dict_entries("di-2") == [(b"k", b"v")]
    assert await state.queue_stats("qu-2") == (1, 1)


async def test_create_never_replaces_an_object_holding_the_id_or_the_name(state: StateStore) -> None:
    assert await state.create(_obj("di-1", "dict", "taken"))
    assert not await state.create(_obj("di-2", "dict", "taken"))  # the name is held
    assert not await state.create(_obj("di-1", "dict", "other"))  # the id is held
    assert await state.create(_obj("qu-1", "queue", "taken"))  # names are per kind
    assert await state.by_name("dict", "main", "taken") == _obj("di-1", "dict", "taken")
    assert await state.get("dict", "di-2") is None
