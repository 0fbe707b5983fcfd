"""The state stores under contract, one per backend: SQLite alone, and SQLite objects with Redis contents."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from berth.store.composed import ComposedStateStore
from berth.store.ports import StateStore
from berth.store.redis import RedisDictStore, RedisQueueStore
from berth.store.sqlite.migrate import migrate
from berth.store.sqlite.state import SqliteStateStore

STATE_BACKENDS = ["sqlite", "redis"]


def migrated_memory_db() -> sqlite3.Connection:
    """An in-memory SQLite database at the latest schema, for the state objects of a composed store."""
    db = sqlite3.connect(":memory:", isolation_level=None)
    migrate(db)
    return db


@pytest.fixture(params=STATE_BACKENDS)
async def state(request: pytest.FixtureRequest) -> AsyncIterator[StateStore]:
    db = migrated_memory_db()
    objects = SqliteStateStore(db)
    if request.param == "sqlite":
        yield objects
    else:
        client = Redis.from_url(request.getfixturevalue("redis_url"))
        yield ComposedStateStore(objects, RedisDictStore(client), RedisQueueStore(client))
        await client.aclose()
    db.close()
