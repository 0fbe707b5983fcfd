"""A worker host's link to its control plane (`berth worker`): it joins the server's worker hub with a
join token, reports its capacity, runs what the hub asks on its LocalWorker, and streams container
output and exits back. The link reconnects with backoff; tasks the server gave up on while the link
was down are stopped when it comes back (the server says which)."""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import ssl
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import aiohttp

from berth.domain import codec
from berth.domain.images import BuildError, ImageBuildSpec
from berth.domain.spec import BindMount, TaskSpec, TunnelRequest, WorkerInventory
from berth.domain.usage import UsageSample
from berth.worker.agent import LocalWorker, memory_mb
from berth.worker.volumes import VolumeCopies

log = logging.getLogger("berth.worker.link")

HEARTBEAT_S = 5.0
_BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)


class JoinRefused(Exception):
    """The server refused the join token: retrying cannot help."""


class WorkerLink:
    def __init__(
        self,
        hub_url: str | list[str],
        server_url: str,
        token: str,
        worker_id: str | None = None,
        tls: ssl.SSLContext | None = None,
        container_http_url: str = "",
        on_switch: Callable[[int], None] | None = None,
    ) -> None:
        # ws(s)://server:http_port/workers/connect, one per server replica this worker may join: it stays with
        # one while it can and moves to the next when it cannot reach it (on_switch then gets the new index).
        self.hub_urls = [hub_url] if isinstance(hub_url, str) else list(hub_url)
        self._current = 0
        self._on_switch = on_switch
        self.server_url = server_url  # the gRPC URL this host's containers call back (the local relay)
        self.container_http_url = container_http_url
        self._tls = tls
        self._token = token
        self.worker_id = worker_id or platform.node()
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._ops: set[asyncio.Task[None]] = set()
        self.worker: LocalWorker | None = None
        self.volumes: VolumeCopies | None = None
        self.joined = asyncio.Event()

    @property
    def hub_url(self) -> str:
        return self.hub_urls[self._current]

    def _next_replica(self) -> None:
        if len(self.hub_urls) > 1:
            self._current = (self._current + 1) % len(self.hub_urls)
            log.info("worker %s tries the next server replica: %s", self.worker_id, self.hub_url)
            if self._on_switch is not None:
                self._on_switch(self._current)

    # sinks for the LocalWorker: events go out on the current connection (dropped while it is down:
    # the server has given those tasks up by then)
    def on_output(self, spec: TaskSpec, fd: int, text: str) -> None:
        self._send({"type": "output", "task_id": spec.task_id, "fd": fd, "text": text})

    async def on_exit(self, spec: TaskSpec, code: int) -> None:
        if self.volumes is not None:
            await self.volumes.release(spec.task_id)  # before the exit: the next container sees its writes
        self._send({"type": "exit", "task_id": spec.task_id, "code": code})

    def on_usage(self, samples: list[UsageSample]) -> None:
        self._send({"type": "usage", "samples": [codec.encode(u) for u in samples]})

    def _send(self, message: dict[str, Any], ws: aiohttp.ClientWebSocketResponse | None = None) -> None:
        """Send without waiting, on `ws` or the current connection; nothing when it is closed."""
        ws = ws or self._ws
        if ws is not None and not ws.closed:
            task = asyncio.ensure_future(ws.send_json(message))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())

    def inventory(self) -> WorkerInventory:
        assert self.worker is not None
        w = self.worker
        return WorkerInventory(
            self.worker_id,
            w.slots,
            float(os.cpu_count() or 1),
            memory_mb(),
            w.runtime.name,
            w.builds_images,
            list(w.gpus.gpus),
            w.running_ids(),
            self.container_http_url,
            w.router.url,
            w.tunnel_host,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Stay joined until `stop` is set; JoinRefused when the token is refused."""
        attempt = 0
        async with aiohttp.ClientSession() as session:
            while not stop.is_set():
                try:
                    await self._session(session, stop)
                    attempt = 0
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    log.warning("worker link to %s failed: %s", self.hub_url, exc)
                    self._next_replica()
                self.joined.clear()
                if stop.is_set():
                    break
                delay = _BACKOFF_S[min(attempt, len(_BACKOFF_S) - 1)]
                attempt += 1
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                except TimeoutError:
                    pass

    async def _session(self, session: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        headers = {"Authorization": f"Bearer {self._token}"}
        try:
            ws = await session.ws_connect(
                self.hub_url, headers=headers, heartbeat=HEARTBEAT_S, max_msg_size=0, ssl=self._tls or True
            )
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status == 401:
                raise JoinRefused(f"{self.hub_url} refused the join token (wrong, or revoked)") from exc
            raise
        async with ws:
            await ws.send_json({"type": "hello", "inventory": codec.encode(self.inventory())})
            welcome = await ws.receive_json(timeout=30)
            if welcome.get("grant_key") and self.worker is not None:
                self.worker.trust_grants(str(welcome["grant_key"]).encode())
            if welcome.get("tunnel_cert") and self.worker is not None:
                cert, key = str(welcome["tunnel_cert"]).encode(), str(welcome["tunnel_key"]).encode()
                await asyncio.to_thread(self.worker.serve_tunnels_pem, cert, key)
            self._ws = ws
            for task_id in welcome.get("stop", []):
                self._spawn(self._stop_stale(task_id))
            log.info("worker %s joined %s", self.worker_id, self.hub_url)
            self.joined.set()
            stopper = asyncio.ensure_future(stop.wait())
            try:
                await self._receive(ws, stopper)
            finally:
                stopper.cancel()
                self._ws = None

    async def _receive(self, ws: aiohttp.ClientWebSocketResponse, stopper: asyncio.Future[Any]) -> None:
        while not stopper.done():
            receiving = asyncio.ensure_future(ws.receive())
            await asyncio.wait({receiving, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if not receiving.done():
                receiving.cancel()
                return
            msg = receiving.result()
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                return
            if msg.type == aiohttp.WSMsgType.TEXT:
                data = msg.json()
                if data.get("type") == "call":
                    self._spawn(self._serve_call(ws, data))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._ops.add(task)
        task.add_done_callback(self._ops.discard)

    async def _stop_stale(self, task_id: str) -> None:
        assert self.worker is not None
        log.info("stopping task %s: the server gave it up while this worker was away", task_id)
        await self.worker.stop(task_id, 2.0)

    async def _serve_call(self, ws: aiohttp.ClientWebSocketResponse, call: dict[str, Any]) -> None:
        reply: dict[str, Any] = {"type": "reply", "id": call["id"]}
        try:
            reply.update(ok=True, value=await self._perform(call, lambda line: self._log(ws, call["id"], line)))
        except BuildError as exc:
            reply.update(ok=False, kind="BuildError", error=str(exc))
        except Exception as exc:
            log.warning("%s failed: %s", call.get("op"), exc)
            reply.update(ok=False, kind=type(exc).__name__, error=f"{type(exc).__name__}: {exc}")
        if not ws.closed:
            await ws.send_json(reply)

    async def _volume_bind(self, task_id: str, bind: BindMount) -> BindMount:
        if not bind.volume_id or self.volumes is None:
            raise RuntimeError(
                "Volumes on remote workers need a control plane that keeps them as heads (`berth server`)"
            )
        return await self.volumes.mount(task_id, bind)

    def _log(self, ws: aiohttp.ClientWebSocketResponse, call_id: int, line: str) -> None:
        self._send({"type": "log", "id": call_id, "line": line}, ws)

    async def _perform(self, call: dict[str, Any], on_log: Callable[[str], None]) -> Any:
        worker = self.worker
        assert worker is not None
        op = call["op"]
        if op == "start":
            spec = codec.decode(TaskSpec, call["spec"])
            if spec.binds:
                spec = replace(spec, binds=[await self._volume_bind(spec.task_id, b) for b in spec.binds])
            await worker.start(replace(spec, server_url=self.server_url))
            return None
        if op == "volume":
            if self.volumes is None:
                raise RuntimeError("this worker keeps no volume copies")
            await self.volumes.act(str(call["volume_id"]), str(call["action"]))
            return None
        if op == "signal":
            worker.signal(str(call["task_id"]), int(call["signum"]))
            return None
        if op in ("stop", "stop_after"):
            await getattr(worker, op)(str(call["task_id"]), float(call["grace_s"]))
            return None
        if op == "open_tunnel":
            request = codec.decode(TunnelRequest, call["request"])
            return codec.encode(await worker.open_tunnel(str(call["task_id"]), request))
        if op == "close_tunnel":
            return await worker.close_tunnel(str(call["task_id"]), int(call["port"]))
        if op == "forget_images":
            return await worker.forget_images([str(i) for i in call["image_ids"]])
        if op == "build_image":
            return codec.encode(await worker.build_image(codec.decode(ImageBuildSpec, call["spec"]), on_log))
        raise ValueError(f"unknown operation {op!r}")
