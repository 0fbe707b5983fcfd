"""The worker hub over real WebSockets, with scripted workers: a join token is required, a worker can
report on its own tasks only, and a worker that goes away loses its tasks with WORKER_LOST."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from berth.domain import codec
from berth.domain.cluster import ClusterSpec
from berth.domain.spec import TaskSpec, WorkerInventory
from berth.domain.usage import UsageSample
from berth.workers.hub import WorkerHub
from berth.workers.port import WORKER_LOST, NoCapacity


class Events:
    def __init__(self) -> None:
        self.output: list[tuple[str, str]] = []
        self.exits: list[tuple[str, int]] = []

    def on_output(self, spec: TaskSpec, fd: int, text: str) -> None:
        self.output.append((spec.task_id, text))

    async def on_exit(self, spec: TaskSpec, code: int) -> None:
        self.exits.append((spec.task_id, code))


async def _check(token: str) -> bool:
    return token == "wt-good:secret"


@pytest.fixture
async def hub_server() -> AsyncIterator[tuple[WorkerHub, Events, TestServer]]:
    events = Events()
    hub = WorkerHub(events.on_output, events.on_exit, _check)
    app = web.Application()
    app.router.add_get("/workers/connect", hub.handle)
    server = TestServer(app)
    await server.start_server()
    yield hub, events, server
    await server.close()


async def _join(
    session: aiohttp.ClientSession, server: TestServer, name: str, address: str = ""
) -> aiohttp.ClientWebSocketResponse:
    ws = await session.ws_connect(
        server.make_url("/workers/connect"), headers={"Authorization": "Bearer wt-good:secret"}
    )
    inventory = WorkerInventory(name, 2, 1.0, 1024, "process", False, tunnel_host=address)
    await ws.send_json({"type": "hello", "inventory": codec.encode(inventory)})
    assert (await ws.receive_json())["type"] == "welcome"
    return ws


async def _answer_start(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    call = await ws.receive_json()
    assert call["op"] == "start"
    await ws.send_json({"type": "reply", "id": call["id"], "ok": True, "value": None})
    return dict(call)


async def test_a_worker_without_a_good_join_token_is_refused(hub_server: tuple[WorkerHub, Events, TestServer]) -> None:
    _, _, server = hub_server
    async with aiohttp.ClientSession() as session:
        for headers in ({}, {"Authorization": "Bearer wt-good:wrong"}):
            with pytest.raises(aiohttp.WSServerHandshakeError) as err:
                await session.ws_connect(server.make_url("/workers/connect"), headers=headers)
            assert err.value.status == 401


async def test_a_worker_cannot_report_on_another_workers_task(hub_server: tuple[WorkerHub, Events, TestServer]) -> None:
    hub, events, server = hub_server
    async with aiohttp.ClientSession() as session:
        first = await _join(session, server, "w1")
        second = await _join(session, server, "w2")
        spec = TaskSpec("ta-1", "fu-1", "ap-1", b"", "", "secret")
        started = asyncio.ensure_future(hub.start(spec))
        done, _ = await asyncio.wait(
            [asyncio.ensure_future(_answer_start(first)), asyncio.ensure_future(_answer_start(second))],
            return_when=asyncio.FIRST_COMPLETED,
        )
        await started
        owner, other = (first, second) if "w1" in hub._homes["ta-1"].worker_id else (second, first)
        await other.send_json({"type": "output", "task_id": "ta-1", "fd": 1, "text": "forged"})
        await other.send_json({"type": "exit", "task_id": "ta-1", "code": 0})
        await owner.send_json({"type": "output", "task_id": "ta-1", "fd": 1, "text": "real"})
        await owner.send_json({"type": "exit", "task_id": "ta-1", "code": 3})
        for _ in range(100):
            if events.exits:
                break
            await asyncio.sleep(0.01)
        assert events.output == [("ta-1", "real")]
        assert events.exits == [("ta-1", 3)]
        for ws in (first, second):
            await ws.close()


async def test_a_worker_that_goes_away_loses_its_tasks(hub_server: tuple[WorkerHub, Events, TestServer]) -> None:
    hub, events, server = hub_server
    async with aiohttp.ClientSession() as session:
        ws = await _join(session, server, "w1")
        started = asyncio.ensure_future(hub.start(TaskSpec("ta-2", "fu-1", "ap-1", b"", "", "secret")))
        await _answer_start(ws)
        await started
        assert hub.free_slots() == 1
        await ws.close()
        for _ in range(200):
            if events.exits:
                break
            await asyncio.sleep(0.01)
        assert events.exits == [("ta-2", WORKER_LOST)]
        assert hub.free_slots() == 0
        assert "none is connected" in (hub.placement_blocker([], 0) or "")


async def test_capacity_reports_each_remote_worker_and_what_its_containers_hold(
    hub_server: tuple[WorkerHub, Events, TestServer],
) -> None:
    hub, _, server = hub_server
    async with aiohttp.ClientSession() as session:
        ws = await _join(session, server, "w1")
        spec = TaskSpec("ta-3", "fu-1", "ap-1", b"", "", "secret", memory_mb=256, cpu=0.5)
        started = asyncio.ensure_future(hub.start(spec))
        await _answer_start(ws)
        await started
        (w1,) = hub.capacity()
        assert "w1" in w1.worker_id
        assert (w1.slots, w1.slots_used, w1.cpu, w1.cpu_used) == (2, 1, 1.0, 0.5)
        assert (w1.memory_mb, w1.memory_used_mb) == (1024, 256)
        await ws.close()
        for _ in range(200):
            if not hub.capacity():
                break
            await asyncio.sleep(0.01)
        assert hub.capacity() == []


async def test_usage_a_worker_measured_reaches_the_control_plane_for_its_own_tasks_only(
    hub_server: tuple[WorkerHub, Events, TestServer],
) -> None:
    hub, _, server = hub_server
    got: list[UsageSample] = []
    hub.on_usage = got.extend
    async with aiohttp.ClientSession() as session:
        ws = await _join(session, server, "w1")
        started = asyncio.ensure_future(hub.start(TaskSpec("ta-4", "fu-1", "ap-1", b"", "", "secret")))
        await _answer_start(ws)
        await started
        mine = UsageSample("ta-4", "ap-1", "fu-1", "", 60, 1.5, 0.25)
        forged = UsageSample("ta-elsewhere", "ap-1", "fu-1", "", 60, 99.0, 0.0)
        await ws.send_json({"type": "usage", "samples": [codec.encode(mine), codec.encode(forged)]})
        for _ in range(200):
            if got:
                break
            await asyncio.sleep(0.01)
        assert got == [mine]
        await ws.close()


async def test_a_clusters_containers_all_go_to_one_worker_with_room_for_all(
    hub_server: tuple[WorkerHub, Events, TestServer],
) -> None:
    hub, _, server = hub_server
    async with aiohttp.ClientSession() as session:
        w1 = await _join(session, server, "w1", "10.0.0.1")
        w2 = await _join(session, server, "w2", "10.0.0.2")
        started = asyncio.ensure_future(hub.start(TaskSpec("ta-solo", "fu-1", "ap-1", b"", "", "s")))
        await _answer_start(w1)  # the least loaded, first by name: w1 now has one slot left
        await started
        hub.reserve_cluster("cu-1", ["ta-c0", "ta-c1"], [], 0, 0.0)
        for rank in (0, 1):
            spec = TaskSpec(f"ta-c{rank}", "fu-2", "ap-1", b"", "", "s", cluster=ClusterSpec("cu-1", rank, 2))
            started = asyncio.ensure_future(hub.start(spec))
            call = await asyncio.wait_for(_answer_start(w2), 5)  # a start sent to w1 instead times out here
            assert call["spec"]["cluster"]["peers"] == []  # all of it on one worker: no link to span
            await started
        hub.release_cluster("cu-1")
        assert hub._homes["ta-c0"].worker_id == hub._homes["ta-c1"].worker_id == "w2"
        for ws in (w1, w2):
            await ws.close()


async def test_a_cluster_no_worker_can_hold_alone_is_held_on_several_before_any_starts_and_told_its_peers(
    hub_server: tuple[WorkerHub, Events, TestServer],
) -> None:
    hub, _, server = hub_server
    async with aiohttp.ClientSession() as session:
        w1 = await _join(session, server, "w1", "10.0.0.1")
        w2 = await _join(session, server, "w2", "10.0.0.2")
        ids = ["ta-c0", "ta-c1", "ta-c2"]
        hub.reserve_cluster("cu-1", ids, [], 0, 0.0)
        # Held before any starts: what is left cannot take another cluster of 2, nor does the room go twice.
        assert sorted(w.slots_used for w in hub.capacity()) == [1, 2]
        with pytest.raises(NoCapacity):
            hub.reserve_cluster("cu-2", ["ta-d0", "ta-d1"], [], 0, 0.0)
        calls = []
        for rank, ws in ((0, w1), (1, w1), (2, w2)):  # ranks in a row on each worker, the roomiest first
            spec = TaskSpec(ids[rank], "fu-2", "ap-1", b"", "", "s", cluster=ClusterSpec("cu-1", rank, 3))
            started = asyncio.ensure_future(hub.start(spec))
            calls.append(await asyncio.wait_for(_answer_start(ws), 5))
            await started
        hub.release_cluster("cu-1")
        assert [c["spec"]["cluster"]["peers"] for c in calls] == [["10.0.0.2"], ["10.0.0.2"], ["10.0.0.1"]]
        assert sorted(w.slots_used for w in hub.capacity()) == [1, 2]  # now held by the running members
        for ws in (w1, w2):
            await ws.close()


async def test_room_held_for_a_cluster_that_did_not_start_is_given_back(
    hub_server: tuple[WorkerHub, Events, TestServer],
) -> None:
    hub, _, server = hub_server
    async with aiohttp.ClientSession() as session:
        w1 = await _join(session, server, "w1", "10.0.0.1")
        w2 = await _join(session, server, "w2", "10.0.0.2")
        hub.reserve_cluster("cu-1", ["ta-c0", "ta-c1", "ta-c2", "ta-c3"], [], 0, 0.0)
        assert hub.free_slots() == 0
        hub.release_cluster("cu-1")
        assert hub.free_slots() == 4
        with pytest.raises(NoCapacity, match="room held for its cluster is gone"):
            await hub.start(TaskSpec("ta-c0", "fu-2", "ap-1", b"", "", "s", cluster=ClusterSpec("cu-1", 0, 4)))
        for ws in (w1, w2):
            await ws.close()


async def test_a_cluster_spans_only_workers_that_the_others_can_reach(
    hub_server: tuple[WorkerHub, Events, TestServer],
) -> None:
    hub, _, server = hub_server
    async with aiohttp.ClientSession() as session:
        w1 = await _join(session, server, "w1", "127.0.0.1")  # no address of their own to tunnel to
        w2 = await _join(session, server, "w2", "127.0.0.1")
        with pytest.raises(NoCapacity, match="advertise an address of their own"):
            hub.reserve_cluster("cu-1", ["ta-c0", "ta-c1", "ta-c2"], [], 0, 0.0)
        hub.reserve_cluster("cu-2", ["ta-d0", "ta-d1"], [], 0, 0.0)  # one worker holds it all: no link to span
        assert sorted(w.slots_used for w in hub.capacity()) == [0, 2]
        for ws in (w1, w2):
            await ws.close()
