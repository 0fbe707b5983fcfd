"""Wake-ups between server replicas through one Redis: a notify on one replica wakes a listener on another,
local waiters never wait on Redis, a lost subscription wakes every waiter, and a blocking queue get on one
replica returns an item put through another."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator

import pytest
from modal_proto import api_pb2
from redis.asyncio import Redis

from berth.clock import SystemClock
from berth.services.queues import QueueService
from berth.services.wakeups import ReplicaNotifier
from berth.store.composed import ComposedStateStore
from berth.store.redis import RedisDictStore, RedisQueueStore, RedisWakeBus
from berth.store.sqlite.state import SqliteStateStore
from tests.contract.backends import migrated_memory_db


@pytest.fixture
async def replicas(redis_url: str) -> AsyncIterator[list[ReplicaNotifier]]:
    """Two started notifiers, each with its own connection, as two server processes would have."""
    notifiers = [ReplicaNotifier(RedisWakeBus.from_url(redis_url)) for _ in range(2)]
    for n in notifiers:
        await n.start()
    yield notifiers
    for n in notifiers:
        await n.close()


async def test_a_notify_on_one_replica_wakes_a_listener_on_another(replicas: list[ReplicaNotifier]) -> None:
    a, b = replicas
    with b.listen("queue:q1") as waiter, b.listen("queue:other") as bystander:
        assert not await waiter.wait(0)
        a.notify("queue:q1")
        started = time.monotonic()
        assert await waiter.wait(5)
        assert time.monotonic() - started < 1
        assert not await bystander.wait(0.2)


async def test_a_local_notify_wakes_local_waiters_without_waiting_on_redis(replicas: list[ReplicaNotifier]) -> None:
    a, _ = replicas
    with a.listen("k") as waiter:
        a.notify("k")
        assert await waiter.wait(0)  # already woken: the notify itself set it, no round trip


async def test_a_replica_ignores_its_own_publications(replicas: list[ReplicaNotifier]) -> None:
    a, b = replicas
    with b.listen("k") as other:
        a.notify("k")
        with a.listen("k") as own:  # registered before any echo could arrive
            assert await other.wait(5)
            await asyncio.sleep(0.2)
            assert not await own.wait(0)


async def test_a_lost_subscription_wakes_every_waiter_once_it_is_back(
    replicas: list[ReplicaNotifier], redis_client: Redis
) -> None:
    _, b = replicas
    with b.listen("queue:a") as first, b.listen("log:b") as second:
        killed = await redis_client.client_kill_filter(_type="pubsub")
        assert killed >= 2
        assert await first.wait(5)
        assert await second.wait(5)
    a, _ = replicas
    with b.listen("again") as waiter:  # and the bus works after resubscribing
        a.notify("again")
        assert await waiter.wait(5)


async def test_a_blocking_get_on_one_replica_returns_an_item_put_through_another(
    replicas: list[ReplicaNotifier], redis_client: Redis
) -> None:
    db = migrated_memory_db()  # the shared SQL the objects live in
    store = ComposedStateStore(SqliteStateStore(db), RedisDictStore(redis_client), RedisQueueStore(redis_client))
    put_side, get_side = (QueueService(store, n, SystemClock()) for n in replicas)
    created = await put_side.get_or_create(
        api_pb2.QueueGetOrCreateRequest(object_creation_type=api_pb2.OBJECT_CREATION_TYPE_EPHEMERAL)
    )
    getter = asyncio.create_task(get_side.get(api_pb2.QueueGetRequest(queue_id=created.queue_id, timeout=30)))
    await asyncio.sleep(0.3)
    assert not getter.done()
    started = time.monotonic()
    await put_side.put(api_pb2.QueuePutRequest(queue_id=created.queue_id, values=[b"hello"]))
    assert await asyncio.wait_for(getter, 5) == [b"hello"]
    assert time.monotonic() - started < 1
    db.close()


async def test_a_replica_whose_redis_is_unreachable_fails_to_start_and_says_why() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once the socket closes
    bus = RedisWakeBus.from_url(f"redis://127.0.0.1:{port}/0")
    with pytest.raises(ConnectionError, match="no subscription to Redis wake-ups within 1 s"):
        await bus.start(lambda key: None, lambda: None, timeout=1)
