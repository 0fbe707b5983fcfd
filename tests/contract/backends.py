"""The state stores under contract, one per backend: SQLite alone, and SQLite objects with Redis contents."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from berth.store.composed import ComposedStateStore
from berth.store.ports import StateStore
from berth.store.redis import RedisDictStore, RedisQueueStore
from berth.store.sqlite.state import SqliteStateStore

STATE_BACKENDS = ["sqlite", "redis"]


@pytest.fixture(params=STATE_BACKENDS)
async def state(request: pytest.FixtureRequest) -> AsyncIterator[StateStore]:
    db = sqlite3.connect(":memory:", isolation_level=None)
    objects = SqliteStateStore(db)
    if request.param == "sqlite":
        yield objects
    else:
        client = Redis.from_url(request.getfixturevalue("redis_url"))
        yield ComposedStateStore(objects, RedisDictStore(client), RedisQueueStore(client))
        await client.aclose()
    db.close()
