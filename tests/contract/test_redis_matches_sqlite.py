"""Random sequences of dict and queue operations, applied to the SQLite store and to the Redis stores side
by side: every answer must be the same. The examples the contract tests spell out cannot cover every
interleaving of puts, pops, clears, cursors and expiry; this finds the ones they miss."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from berth.devservices.redis import RedisServer
from berth.store.composed import ComposedStateStore
from berth.store.ports import StateStore
from berth.store.redis import RedisDictStore, RedisQueueStore
from berth.store.sqlite.state import SqliteStateStore
from tests.contract.backends import migrated_memory_db

_keys = st.sampled_from([b"a", b"b", b"c", b"\x00"])
_values = st.binary(max_size=3)
_dicts = st.sampled_from(["di-1", "di-2"])
_partitions = st.sampled_from([b"", b"p"])
_maybe_partition = st.one_of(st.none(), _partitions)

# One queue only: SQLite numbers the items of all queues from one sequence, Redis each queue from its own,
# and both agree within a single queue (which is all a cursor ever compares).
_QUEUE = "qu-1"

_dict_ops = st.one_of(
    st.tuples(st.just("dict_put"), _dicts, st.lists(st.tuples(_keys, _values), min_size=1, max_size=3), st.booleans()),
    st.tuples(st.just("dict_get"), _dicts, _keys),
    st.tuples(st.just("dict_pop"), _dicts, _keys),
    st.tuples(st.just("dict_len"), _dicts, st.integers(1, 4)),
    st.tuples(st.just("dict_clear"), _dicts),
    st.tuples(st.just("dict_entries"), _dicts),
)
_push = st.tuples(st.just("queue_push"), _partitions, st.lists(_values, min_size=1, max_size=4), st.integers(1, 6))
_queue_ops = st.one_of(
    _push,
    _push,
    st.tuples(st.just("queue_pop"), _partitions, st.integers(1, 3)),
    st.tuples(st.just("queue_items_after"), _partitions, st.integers(0, 12), st.integers(1, 4)),
    st.tuples(st.just("queue_len"), _maybe_partition),
    st.tuples(st.just("queue_clear"), _maybe_partition),
    st.tuples(st.just("queue_stats")),
    st.tuples(st.just("tick"), st.integers(1, 3)),
)


async def _apply(store: StateStore, op: tuple[Any, ...], now: float) -> object:
    name, *args = op
    if name == "dict_put":
        return await store.dict_put(args[0], args[1], now, args[2])
    if name in ("dict_get", "dict_pop", "dict_len", "dict_clear", "dict_entries"):
        return await getattr(store, name)(*args)
    if name == "queue_push":
        # ttl in whole seconds against a clock in whole seconds: expiry lands on exact comparisons too
        return await store.queue_push(_QUEUE, args[0], args[1], now, max_items=5, ttl_s=float(args[2]))
    if name == "queue_stats":
        return await store.queue_stats(_QUEUE)
    await store.queue_expire(_QUEUE, now)
    return await getattr(store, name)(_QUEUE, *args)


async def _compare(url: str, ops: list[tuple[Any, ...]]) -> None:
    client = Redis.from_url(url)
    db = migrated_memory_db()
    try:
        await client.flushdb()
        sqlite = SqliteStateStore(db)
        redis = ComposedStateStore(SqliteStateStore(db), RedisDictStore(client), RedisQueueStore(client))
        now = 1000.0
        for i, op in enumerate(ops):
            if op[0] == "tick":
                now += op[1]
                continue
            expected, got = await _apply(sqlite, op, now), await _apply(redis, op, now)
            assert got == expected, f"step {i} {op!r}: sqlite {expected!r}, redis {got!r}"
    finally:
        db.close()
        await client.aclose()


_SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@_SETTINGS
@given(ops=st.lists(_dict_ops, max_size=30))
def test_redis_answers_every_dict_sequence_as_sqlite_does(
    redis_server: RedisServer, ops: list[tuple[Any, ...]]
) -> None:
    asyncio.run(_compare(redis_server.url, ops))


@_SETTINGS
@given(ops=st.lists(_queue_ops, max_size=40))
def test_redis_answers_every_queue_sequence_as_sqlite_does(
    redis_server: RedisServer, ops: list[tuple[Any, ...]]
) -> None:
    asyncio.run(_compare(redis_server.url, ops))
