"""What the Redis contents look like from outside: every key under `berth:`, tagged with its object id,
and nothing left once the object is deleted."""

from __future__ import annotations

from redis.asyncio import Redis

from berth.store.composed import ComposedStateStore
from berth.store.records import StateObject
from berth.store.redis import RedisDictStore, RedisQueueStore
from berth.store.sqlite.state import SqliteStateStore
from tests.contract.backends import migrated_memory_db


async def test_keys_are_namespaced_by_object_and_delete_leaves_none(redis_client: Redis) -> None:
    db = migrated_memory_db()
    state = ComposedStateStore(SqliteStateStore(db), RedisDictStore(redis_client), RedisQueueStore(redis_client))
    for object_id, kind in (("di-9", "dict"), ("qu-9", "queue")):
        await state.put(StateObject(object_id, kind, None, "main", True, None, 1, None, 1.0, 1.0))
    await state.dict_put("di-9", [(b"k", b"v")], 1.0, only_new=False)
    await state.queue_push("qu-9", b"p", [b"x"], 1.0, max_items=10, ttl_s=60)
    keys = sorted(k.decode() for k in await redis_client.keys("*"))
    assert keys == [
        "berth:dict:{di-9}",
        "berth:dict:{di-9}:order",
        "berth:dict:{di-9}:seq",
        "berth:queue:{qu-9}:p:70",
        "berth:queue:{qu-9}:parts",
        "berth:queue:{qu-9}:seq",
    ]
    await state.delete("di-9")
    await state.delete("qu-9")
    assert await redis_client.keys("*") == []
    db.close()
