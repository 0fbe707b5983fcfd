"""Contract of web endpoints, proxy-auth tokens, schedules and their ticks, on every backend."""

from __future__ import annotations

import asyncio

from berth.store.factory import Stores
from berth.store.records import Endpoint, ScheduleRow, TickRow


async def test_an_endpoint_is_found_by_key_and_by_port_and_can_move(stores: Stores) -> None:
    web = stores.web
    ep = Endpoint("app-web", 9001, "ap-1", "fu-1", "", True)
    await web.put_endpoint(ep, 1.0)
    await web.put_endpoint(Endpoint("app-api", 9000, "ap-1", "fu-2", "get", False), 1.0)
    assert await web.endpoint_by_key("app-web") == ep
    assert await web.endpoint_by_port(9000) == Endpoint("app-api", 9000, "ap-1", "fu-2", "get", False)
    assert [e.port for e in await web.endpoints()] == [9000, 9001]
    await web.move_endpoint("app-web", 9005)
    assert await web.endpoint_by_port(9001) is None
    assert (await web.endpoint_by_port(9005)).key == "app-web"  # type: ignore[union-attr]


async def test_an_endpoint_put_on_a_taken_port_replaces_the_endpoint_that_held_it(stores: Stores) -> None:
    web = stores.web
    await web.put_endpoint(Endpoint("old", 9001, "ap-1", "fu-1", "", False), 1.0)
    await web.put_endpoint(Endpoint("new", 9001, "ap-2", "fu-2", "", False), 2.0)
    assert await web.endpoint_by_key("old") is None
    assert (await web.endpoint_by_port(9001)).key == "new"  # type: ignore[union-attr]


async def test_a_web_token_is_valid_until_revoked_once(stores: Stores) -> None:
    web = stores.web
    await web.add_token("wt-1", "h1", 1.0)
    await web.add_token("wt-2", "h2", 2.0)
    assert await web.token_hash("wt-1") == "h1"
    assert await web.revoke_token("wt-1", 3.0) is True
    assert await web.revoke_token("wt-1", 4.0) is False
    assert await web.token_hash("wt-1") is None
    assert await web.tokens() == [("wt-1", 1.0, 3.0), ("wt-2", 2.0, None)]


async def test_schedules_are_due_by_their_next_tick(stores: Stores) -> None:
    web = stores.web
    await web.put_schedule(ScheduleRow("fu-1", "ap-1", b"spec", 0.0, 20.0))
    await web.put_schedule(ScheduleRow("fu-2", "ap-1", b"spec", 0.0, 10.0))
    assert await web.earliest_tick() == 10.0
    assert [s.function_id for s in await web.due_schedules(20.0)] == ["fu-2", "fu-1"]
    assert [s.function_id for s in await web.due_schedules(15.0)] == ["fu-2"]
    await web.put_schedule(ScheduleRow("fu-2", "ap-1", b"new", 5.0, 30.0))
    assert await web.schedule("fu-2") == ScheduleRow("fu-2", "ap-1", b"new", 5.0, 30.0)
    await web.delete_schedule("fu-2")
    await web.delete_schedule("fu-1")
    assert await web.schedule("fu-2") is None and await web.earliest_tick() is None


async def test_a_tick_is_claimed_once_and_advances_its_schedule(stores: Stores) -> None:
    web = stores.web
    await web.put_schedule(ScheduleRow("fu-1", "ap-1", b"spec", 0.0, 10.0))
    tick = TickRow("fu-1", 10.0, "fc-1", "in-1", "pending")
    assert await web.record_tick(tick, 20.0) is True
    assert await web.record_tick(TickRow("fu-1", 10.0, "fc-2", "in-2", "pending"), 20.0) is False
    assert (await web.schedule("fu-1")).next_tick == 20.0  # type: ignore[union-attr]
    assert await web.pending_ticks() == [tick]
    await web.mark_fired("fu-1", 10.0)
    assert await web.pending_ticks() == []
    assert [t.state for t in await web.ticks("fu-1")] == ["fired"]


async def test_two_replicas_claiming_one_tick_at_once_claim_it_once(stores: Stores, replica: Stores) -> None:
    await stores.web.put_schedule(ScheduleRow("fu-1", "ap-1", b"spec", 0.0, 10.0))
    for tick_at in (10.0, 20.0, 30.0):
        claims = [
            (stores, replica)[i % 2].web.record_tick(TickRow("fu-1", tick_at, f"fc-{i}", f"in-{i}", "pending"), tick_at)
            for i in range(6)
        ]
        assert sum(await asyncio.gather(*claims)) == 1
    assert [t.tick_at for t in await stores.web.ticks("fu-1")] == [10.0, 20.0, 30.0]


async def test_pruning_ticks_forgets_only_fired_ones_before_the_cutoff(stores: Stores) -> None:
    web = stores.web
    for at in (10.0, 20.0, 30.0):
        await web.record_tick(TickRow("fu-1", at, "fc", "in", "pending"), at + 10)
    await web.mark_fired("fu-1", 10.0)
    await web.mark_fired("fu-1", 30.0)
    assert await web.prune_ticks(before=25.0) == 1
    assert [(t.tick_at, t.state) for t in await web.ticks("fu-1")] == [(20.0, "pending"), (30.0, "fired")]


async def test_concurrent_puts_on_one_port_leave_one_endpoint_and_fail_none(stores: Stores, replica: Stores) -> None:
    puts = [
        (stores, replica)[i % 2].web.put_endpoint(Endpoint(f"ep-{i}", 9100, "ap-1", "fu-1", "", False), 1.0)
        for i in range(10)
    ]
    await asyncio.gather(*puts)
    assert len(await stores.web.endpoints()) == 1
