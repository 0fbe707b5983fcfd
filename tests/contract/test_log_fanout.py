"""Live logs between server replicas through one Redis: a client following an app on one replica sees
the output that reached another (in order, each batch once), and the app's end too. Each replica
numbers entries itself and records history only for what it received first-hand."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from modal_proto import api_pb2

from berth.services.logs import LogBus
from berth.store.redis import RedisLogFanout


@pytest.fixture
async def buses(redis_url: str) -> AsyncIterator[tuple[LogBus, LogBus, list[str]]]:
    recorded: list[str] = []
    a = LogBus(lambda app_id, batch: recorded.append(batch.items[0].data))
    b = LogBus(lambda app_id, batch: recorded.append("b:" + batch.items[0].data))
    for bus in (a, b):
        await bus.share(RedisLogFanout.from_url(redis_url))
    yield a, b, recorded
    for bus in (a, b):
        await bus.close()


async def _follow(bus: LogBus, app_id: str) -> list[api_pb2.TaskLogsBatch]:
    return [batch async for batch in bus.follow(app_id, "", timeout=10)]


async def test_output_on_one_replica_reaches_a_follower_on_another_in_order(
    buses: tuple[LogBus, LogBus, list[str]],
) -> None:
    a, b, recorded = buses
    following = asyncio.ensure_future(_follow(b, "ap-1"))
    await asyncio.sleep(0.2)
    for i in range(50):
        a.output("ap-1", "ta-1", "fu-1", 1, f"line {i}\n")
    a.output("ap-2", "ta-2", "fu-2", 1, "another app\n")
    await asyncio.sleep(0.5)
    a.app_done("ap-1")
    batches = await asyncio.wait_for(following, 10)
    lines = [item.data for batch in batches for item in batch.items]
    assert lines == [f"line {i}\n" for i in range(50)]
    assert batches[-1].app_done
    assert [int(x.entry_id) for x in batches[:-1]] == list(range(1, 51))  # b's own numbering
    assert recorded == [f"line {i}\n" for i in range(50)] + ["another app\n"]  # history only where it arrived


async def test_a_replica_does_not_see_its_own_batches_twice(buses: tuple[LogBus, LogBus, list[str]]) -> None:
    a, _, _ = buses
    a.output("ap-3", "ta-1", "fu-1", 1, "once\n")
    await asyncio.sleep(0.5)
    a.app_done("ap-3")
    batches = await _follow(a, "ap-3")
    assert [item.data for batch in batches for item in batch.items] == ["once\n"]
