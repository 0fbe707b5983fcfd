"""Remote workers, seen from the control plane. Workers on other hosts connect to the server's HTTP side
(`/workers/connect`, a WebSocket, authenticated by a join token) and the hub serves the worker port over
them: it places each container on a worker with room for it (slots, memory, GPUs; the least loaded
first), forwards signals and stops, and turns the workers' events back into output and exits. A gang-scheduled
cluster is placed whole before any member starts (reserve_cluster: one worker when one has room for all, else
several), and each member is told the addresses of the other workers that hold members (ClusterSpec.peers),
which is all a worker needs to join its part of the cluster's link to theirs.

A worker that goes away (killed, or cut off longer than the heartbeat allows) loses its tasks: each is
reported with the WORKER_LOST exit code, so what they held is requeued and runs elsewhere. When the worker
comes back, the tasks it still runs are ones the control plane gave up on, and it is told to stop them.

The messages are JSON: {"type": "call", "id", "op", ...} from the hub, answered by {"type": "reply", "id",
"ok", "value"|"error"}; {"type": "output"|"exit"|"log"|"usage", ...} events from the worker ("usage": the
samples of berth.domain.usage its meter took, each minute bucket's integrals per task)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from aiohttp import WSMsgType, web

from berth.domain import codec
from berth.domain.cluster import place, room_for
from berth.domain.gpu import Gpu, GpuRequestError, assign, matches
from berth.domain.images import BuildError, ImageBuildSpec, ImageInfo
from berth.domain.spec import TaskSpec, TunnelAddress, TunnelRequest, WorkerCapacity, WorkerInventory
from berth.domain.usage import UsageSample
from berth.errors import NotFound
from berth.workers.port import WORKER_LOST, BuildLog, NoCapacity, TunnelsUnavailable, WorkerLost

log = logging.getLogger("berth.workers")

HEARTBEAT_S = 5.0  # a worker silent for about this long (no pong) is lost
_KEEP_ROUTERS = 4096
OutputSink = Callable[[TaskSpec, int, str], None]
ExitSink = Callable[[TaskSpec, int], Awaitable[None]]
UsageSink = Callable[[list[UsageSample]], None]
TokenCheck = Callable[[str], Awaitable[bool]]
# A worker's tunnel host → (certificate chain, key) in PEM from the server's CA: its tunnels terminate TLS with it.
CertIssuer = Callable[[str], tuple[bytes, bytes]]


class RemoteError(Exception):
    """An operation failed on the worker; the message is the worker's."""


@dataclass
class _Member:
    inventory: WorkerInventory
    ws: web.WebSocketResponse
    tasks: dict[str, TaskSpec] = field(default_factory=dict)
    gpus_held: dict[str, list[Gpu]] = field(default_factory=dict)
    images: dict[str, ImageInfo] = field(default_factory=dict)
    pending: dict[int, asyncio.Future[Any]] = field(default_factory=dict)
    build_logs: dict[int, BuildLog] = field(default_factory=dict)
    # Room held for cluster members that have not started yet: task → (its cluster, memory MiB, CPUs).
    held: dict[str, tuple[str, int, float]] = field(default_factory=dict)

    @property
    def worker_id(self) -> str:
        return self.inventory.worker_id

    @property
    def address(self) -> str:
        """Where the other workers reach this one (what it advertises; by default its address facing the server)."""
        return self.inventory.tunnel_host

    def free_slots(self) -> int:
        return self.inventory.slots - len(self.tasks) - len(self.held)

    def free_memory_mb(self) -> int:
        held = sum(m for _, m, _ in self.held.values())
        return self.inventory.memory_mb - sum(s.memory_mb for s in self.tasks.values()) - held

    def free_cpu(self) -> float:
        return self.inventory.cpu - sum(s.cpu for s in self.tasks.values()) - sum(c for _, _, c in self.held.values())

    def load(self) -> tuple[float, str]:
        """The least loaded first; ties by id, so placement is deterministic."""
        return ((self.inventory.slots - self.free_slots()) / max(1, self.inventory.slots), self.worker_id)

    def free_gpus(self) -> list[Gpu]:
        held = {g.uuid for gpus in self.gpus_held.values() for g in gpus}
        return [g for g in self.inventory.gpus if g.uuid not in held]


class WorkerHub:
    def __init__(self, on_output: OutputSink, on_exit: ExitSink, check_token: TokenCheck) -> None:
        self._on_output = on_output
        self._on_exit = on_exit
        self._check_token = check_token
        self._members: dict[str, _Member] = {}
        self._homes: dict[str, _Member] = {}  # task id → the worker it runs on
        self._image_specs: dict[str, ImageBuildSpec] = {}  # how to build an image on a worker that lacks it
        self._cluster_homes: dict[str, list[_Member]] = {}  # cluster → the worker of each rank, until all started
        self._ids = itertools.count(1)
        self._closing = False
        self._grant_key = b""  # handed to every worker in its welcome, for its command router
        self.issue_tunnel_cert: CertIssuer | None = None  # set by the server; without it tunnels are refused
        # task id → its worker's router URL, kept after the task exits (clients read a finished sandbox's output)
        self._routers: OrderedDict[str, str] = OrderedDict()
        self.on_usage: UsageSink | None = None  # what workers measured their containers using (metering)

    # the worker port
    @property
    def builds_images(self) -> bool:
        return any(m.inventory.builds_images for m in self._members.values())

    @property
    def workers(self) -> list[WorkerInventory]:
        return [m.inventory for m in self._members.values()]

    def free_slots(self) -> int:
        return sum(max(0, m.free_slots()) for m in self._members.values())

    def capacity(self) -> list[WorkerCapacity]:
        return [
            WorkerCapacity(
                m.worker_id,
                m.inventory.slots,
                m.inventory.slots - m.free_slots(),
                m.inventory.cpu,
                m.inventory.cpu - m.free_cpu(),
                m.inventory.memory_mb,
                m.inventory.memory_mb - m.free_memory_mb(),
            )
            for m in self._members.values()
        ]

    def placement_blocker(self, requests: list[tuple[str, int]], memory_mb: int, cpu: float = 0.0) -> str | None:
        """What keeps a container off every worker for longer than a container's lifetime: no worker at
        all, GPUs or memory no worker has, or GPUs all in use. A worker that is merely full is not a
        blocker: the autoscaler makes room there by retiring idle containers."""
        members = list(self._members.values())
        if not members:
            return "Waiting for a worker: none is connected to this server (start one with `berth worker`)"
        if memory_mb and not any(m.inventory.memory_mb >= memory_mb for m in members):
            return f"Waiting for a worker with {memory_mb} MiB of memory: no connected worker has that much"
        if cpu and not any(m.inventory.cpu >= cpu for m in members):
            return f"Waiting for a worker with {cpu:g} CPUs: no connected worker has that many"
        if not requests:
            return None
        asked = " or ".join(f"{t}:{n}" if n > 1 else t for t, n in requests)
        if not any(self._fits_gpus(m.inventory.gpus, requests) for m in members):
            return f"Waiting for gpu={asked}: no connected worker has such a GPU; the call stays queued"
        if not any(self._fits_gpus(m.free_gpus(), requests) for m in members):
            return f"Waiting for gpu={asked}: all matching GPUs are in use; the call stays queued until one is free"
        return None

    def reserve_cluster(
        self, cluster_id: str, task_ids: list[str], requests: list[tuple[str, int]], memory_mb: int, cpu: float
    ) -> None:
        members = sorted(self._members.values(), key=_Member.load)
        room = {m.worker_id: self._cluster_room(m, requests, memory_mb, cpu) for m in members}
        whole = [(w, n) for w, n in room.items() if n >= len(task_ids)]
        # Spread over workers only where the link can join them: each reached at an address of its own.
        addresses = [m.address for m in members]
        spans = [
            (m.worker_id, room[m.worker_id])
            for m in members
            if m.address and not m.address.startswith("127.") and addresses.count(m.address) == 1
        ]
        ranks = place(whole[:1] or spans, len(task_ids))
        if ranks is None:
            n = len(task_ids)
            blocker = self.placement_blocker(requests, memory_mb, cpu)
            if blocker is None and place(list(room.items()), n) is not None:
                blocker = (
                    f"Waiting for one worker with room for all {n} containers of a cluster: a cluster spans only "
                    "workers that advertise an address of their own (berth worker --advertise)"
                )
            raise NoCapacity(blocker or f"Waiting for room for all {n} containers of a cluster on the workers")
        homes = [self._members[w] for w in ranks]
        for task_id, member in zip(task_ids, homes, strict=True):
            member.held[task_id] = (cluster_id, memory_mb, cpu)
        self._cluster_homes[cluster_id] = homes

    def release_cluster(self, cluster_id: str) -> None:
        for member in {m.worker_id: m for m in self._cluster_homes.pop(cluster_id, [])}.values():
            for task_id in [t for t, (c, _, _) in member.held.items() if c == cluster_id]:
                del member.held[task_id]

    async def start(self, spec: TaskSpec) -> None:
        requests = list(spec.gpu_requests)
        if spec.cluster is not None:  # placed with its whole cluster by reserve_cluster
            member, spec = self._cluster_member(spec)
        else:
            candidates = [m for m in self._members.values() if self._fits(m, requests, spec.memory_mb, spec.cpu)]
            if not candidates:
                raise NoCapacity(self.placement_blocker(requests, spec.memory_mb, spec.cpu) or "every worker is full")
            member = min(candidates, key=_Member.load)
        if requests:
            gpus = self._take_gpus(member, requests)
            member.gpus_held[spec.task_id] = gpus
            spec = replace(spec, gpus=tuple(gpus))
        member.tasks[spec.task_id] = spec
        self._homes[spec.task_id] = member
        if member.inventory.router_url:
            self._routers[spec.task_id] = member.inventory.router_url
            while len(self._routers) > _KEEP_ROUTERS:
                self._routers.popitem(last=False)
        try:
            if member.inventory.builds_images and spec.image_id and spec.image_id not in member.images:
                await self._build_on(member, spec.image_id)
            await self._call(member, "start", spec=codec.encode(spec))
        except BaseException:
            self._forget(member, spec.task_id)
            raise

    def signal(self, task_id: str, signum: int) -> None:
        member = self._homes.get(task_id)
        if member is not None:
            task = asyncio.ensure_future(self._call(member, "signal", task_id=task_id, signum=signum))
            task.add_done_callback(_quiet)

    async def stop(self, task_id: str, grace_s: float) -> None:
        await self._task_call(task_id, "stop", grace_s)

    async def stop_after(self, task_id: str, grace_s: float) -> None:
        await self._task_call(task_id, "stop_after", grace_s)

    async def shutdown(self, grace_s: float = 5.0) -> None:
        self._closing = True
        await asyncio.gather(*(self.stop(t, grace_s) for t in list(self._homes)), return_exceptions=True)
        for member in list(self._members.values()):
            await member.ws.close()

    async def build_image(self, spec: ImageBuildSpec, on_log: BuildLog) -> ImageInfo:
        self._image_specs[spec.image_id] = spec
        builders = [m for m in self._members.values() if m.inventory.builds_images]
        if not builders:
            raise BuildError("No connected worker builds images; start one with `berth worker --runtime crun`")
        member = min(builders, key=lambda m: len(m.tasks))
        return await self._build_on(member, spec.image_id, on_log)

    async def task_volume(self, task_id: str, volume_id: str, action: str) -> None:
        """Has the worker of a container commit its copy of a volume, or reload it from the volume's head."""
        member = self._homes.get(task_id)
        if member is None:
            raise NotFound(f"Task {task_id} runs on no worker joined to this server")
        await self._call(member, "volume", task_id=task_id, volume_id=volume_id, action=action)

    def container_http_url(self, task_id: str) -> str | None:
        """Where the task's containers reach the server's HTTP side: through their worker's relay."""
        member = self._homes.get(task_id)
        if member is None:
            return None
        return member.inventory.container_http_url or None

    def router_url(self, task_id: str) -> str | None:
        return self._routers.get(task_id) or None

    async def open_tunnel(self, task_id: str, request: TunnelRequest) -> TunnelAddress:
        member = self._homes.get(task_id)
        if member is None:
            raise TunnelsUnavailable(f"Task {task_id} is not running on any worker: its ports cannot be exposed")
        if self.issue_tunnel_cert is None or not member.inventory.tunnel_host:
            raise TunnelsUnavailable(
                f"Tunnels (encrypted_ports, unencrypted_ports, h2_ports, modal.forward) are not available on worker "
                f"{member.worker_id}: it was given no certificate for them"
            )
        try:
            value = await self._call(member, "open_tunnel", task_id=task_id, request=codec.encode(request))
        except RemoteError as exc:
            raise TunnelsUnavailable(str(exc).split(": ", 1)[-1]) from exc
        return codec.decode(TunnelAddress, value)

    async def close_tunnel(self, task_id: str, port: int) -> bool:
        member = self._homes.get(task_id)
        if member is None:
            return False
        with contextlib.suppress(WorkerLost, RemoteError):
            return bool(await self._call(member, "close_tunnel", task_id=task_id, port=port))
        return False

    def trust_grants(self, public_pem: bytes) -> None:
        self._grant_key = public_pem

    async def forget_images(self, image_ids: list[str]) -> list[str]:
        removed: list[str] = []
        for member in [m for m in self._members.values() if m.inventory.builds_images]:
            for image_id in image_ids:
                member.images.pop(image_id, None)
            with contextlib.suppress(WorkerLost, RemoteError):
                removed += await self._call(member, "forget_images", image_ids=image_ids)
        return removed

    def image_info(self, image_id: str) -> ImageInfo | None:
        return next((m.images[image_id] for m in self._members.values() if image_id in m.images), None)

    # placement
    @staticmethod
    def _fits_gpus(gpus: list[Gpu], requests: list[tuple[str, int]]) -> bool:
        return any(len([g for g in gpus if matches(t, g)]) >= n for t, n in requests)

    def _fits(self, member: _Member, requests: list[tuple[str, int]], memory_mb: int, cpu: float = 0.0) -> bool:
        if member.free_slots() <= 0 or member.free_memory_mb() < memory_mb or member.free_cpu() < cpu:
            return False
        return not requests or self._fits_gpus(member.free_gpus(), requests)

    def _cluster_room(self, member: _Member, requests: list[tuple[str, int]], memory_mb: int, cpu: float) -> int:
        """How many members of a cluster the worker takes now."""
        room = room_for(member.free_slots(), member.free_memory_mb(), member.free_cpu(), memory_mb, cpu)
        free, sets = member.free_gpus(), 0
        while requests and sets < room:  # each member needs GPUs of its own
            got = next((g for g in (self._try_assign(t, n, free) for t, n in requests) if g), None)
            if got is None:
                return sets
            free, sets = [g for g in free if g not in got], sets + 1
        return room

    @staticmethod
    def _try_assign(gpu_type: str, count: int, free: list[Gpu]) -> list[Gpu]:
        with contextlib.suppress(GpuRequestError):
            return assign(gpu_type, count, free)
        return []

    def _cluster_member(self, spec: TaskSpec) -> tuple[_Member, TaskSpec]:
        """The worker whose room was held for this member, and its spec with the other workers of its cluster."""
        assert spec.cluster is not None
        homes = self._cluster_homes.get(spec.cluster.cluster_id, [])
        member = next((m for m in homes if m.held.pop(spec.task_id, None) is not None), None)
        if member is None or self._members.get(member.worker_id) is not member:
            raise NoCapacity("the room held for its cluster is gone (its worker left)")
        peers = tuple(sorted({m.address for m in homes if m is not member}))
        return member, replace(spec, cluster=replace(spec.cluster, peers=peers))

    @staticmethod
    def _take_gpus(member: _Member, requests: list[tuple[str, int]]) -> list[Gpu]:
        for gpu_type, count in requests:
            with contextlib.suppress(GpuRequestError):
                return assign(gpu_type, count, member.free_gpus())
        raise NoCapacity("the GPUs were taken meanwhile")

    async def _build_on(self, member: _Member, image_id: str, on_log: BuildLog | None = None) -> ImageInfo:
        spec = self._image_specs.get(image_id)
        if spec is None:
            raise BuildError(
                f"Image {image_id} is not built on worker {member.worker_id}; run the app again to build it"
            )
        value = await self._call(member, "build_image", on_log=on_log, spec=codec.encode(spec))
        info = codec.decode(ImageInfo, value)
        member.images[image_id] = info
        return info

    # calls
    async def _task_call(self, task_id: str, op: str, grace_s: float) -> None:
        member = self._homes.get(task_id)
        if member is not None:
            with contextlib.suppress(WorkerLost):
                await self._call(member, op, task_id=task_id, grace_s=grace_s)

    async def _call(self, member: _Member, op: str, on_log: BuildLog | None = None, **args: Any) -> Any:
        call_id = next(self._ids)
        reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        member.pending[call_id] = reply
        if on_log is not None:
            member.build_logs[call_id] = on_log
        try:
            await member.ws.send_json({"type": "call", "id": call_id, "op": op, **args})
            return await reply
        except (ConnectionError, RuntimeError) as exc:
            raise WorkerLost(f"worker {member.worker_id} is gone: {exc}") from exc
        finally:
            member.pending.pop(call_id, None)
            member.build_logs.pop(call_id, None)

    def _forget(self, member: _Member, task_id: str) -> TaskSpec | None:
        member.gpus_held.pop(task_id, None)
        self._homes.pop(task_id, None)
        return member.tasks.pop(task_id, None)

    # the connection
    async def handle(self, request: web.Request) -> web.StreamResponse:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not token or not await self._check_token(token):
            return web.Response(status=401, text="The join token was refused (wrong, or revoked)")
        if self._closing:
            return web.Response(status=503, text="The server is shutting down")
        ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=64 * 1024 * 1024)
        await ws.prepare(request)
        try:
            hello = await ws.receive_json(timeout=30)
            inventory = codec.decode(WorkerInventory, hello.get("inventory"))
        except (ValueError, TypeError, TimeoutError) as exc:
            await ws.close(code=4400, message=f"bad hello: {exc}"[:120].encode())
            return ws
        member = await self._join(inventory, ws)
        try:
            await self._receive(member)
        finally:
            await self._leave(member)
        return ws

    async def _join(self, inventory: WorkerInventory, ws: web.WebSocketResponse) -> _Member:
        old = self._members.get(inventory.worker_id)
        if old is not None:
            await old.ws.close(code=4409, message=b"replaced by a new connection of the same worker")
        member = _Member(inventory, ws)
        self._members[inventory.worker_id] = member
        stale = [t for t in inventory.running if t not in self._homes]
        welcome = {"type": "welcome", "stop": stale, "grant_key": self._grant_key.decode()}
        if self.issue_tunnel_cert is not None and inventory.tunnel_host:
            cert, key = self.issue_tunnel_cert(inventory.tunnel_host)
            welcome.update(tunnel_cert=cert.decode(), tunnel_key=key.decode())
        await ws.send_json(welcome)
        log.info(
            "worker %s joined: %d slots, %d MiB, %d GPU(s), runtime %s",
            inventory.worker_id,
            inventory.slots,
            inventory.memory_mb,
            len(inventory.gpus),
            inventory.runtime,
        )
        return member

    async def _receive(self, member: _Member) -> None:
        async for msg in member.ws:
            if msg.type != WSMsgType.TEXT:
                continue
            try:
                await self._dispatch(member, msg.json())
            except (ValueError, KeyError, TypeError):
                log.warning("worker %s sent a malformed message", member.worker_id)

    async def _dispatch(self, member: _Member, data: dict[str, Any]) -> None:
        kind = data["type"]
        if kind == "reply":
            fut = member.pending.get(int(data["id"]))
            if fut is not None and not fut.done():
                if data.get("ok"):
                    fut.set_result(data.get("value"))
                elif data.get("kind") == "BuildError":
                    fut.set_exception(BuildError(str(data.get("error"))))
                else:
                    fut.set_exception(RemoteError(str(data.get("error"))))
        elif kind == "log":
            sink = member.build_logs.get(int(data["id"]))
            if sink is not None:
                sink(str(data["line"]))
        elif kind == "output":
            spec = member.tasks.get(str(data["task_id"]))
            if spec is not None:
                self._on_output(spec, int(data["fd"]), str(data["text"]))
        elif kind == "usage":
            self._usage(member, data)
        elif kind == "exit":
            spec = self._forget(member, str(data["task_id"]))
            if spec is not None:
                await self._on_exit(spec, int(data["code"]))

    def _usage(self, member: _Member, data: dict[str, Any]) -> None:
        """Metering: what the worker measured, for the tasks it runs (never another worker's)."""
        samples = [codec.decode(UsageSample, raw) for raw in data.get("samples", [])]
        ours = [u for u in samples if u.task_id in member.tasks]
        if ours and self.on_usage is not None:
            self.on_usage(ours)

    async def _leave(self, member: _Member) -> None:
        if self._members.get(member.worker_id) is member:
            del self._members[member.worker_id]
        for fut in member.pending.values():
            if not fut.done():
                fut.set_exception(WorkerLost(f"worker {member.worker_id} disconnected"))
        lost = [s for s in (self._forget(member, t) for t in list(member.tasks)) if s is not None]
        if lost or not self._closing:
            log.warning("worker %s left; %d of its containers are lost", member.worker_id, len(lost))
        for spec in lost:
            try:
                await self._on_exit(spec, WORKER_LOST)
            except Exception:
                log.exception("exit handler for task %s failed", spec.task_id)


def _quiet(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()
