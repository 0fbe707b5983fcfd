"""Sandboxes (V2): a sandbox is a task on a worker that runs its image's command. This module owns their
lifecycle on the control plane: create (a task through the TaskManager, so it takes a worker slot like a
function's container), wait, terminate, names unique per app, tags, listing, and the grants that let a
client reach its task's command router on the worker. Exec and stdio never pass through here: the client
talks to the worker's router directly.

Live sandboxes are known to the server that started their tasks (as its tasks are); each sandbox's record,
result included, is also written to the object store, so `from_id` of a finished one still answers. The
running ones are also in the store's sandbox index (SandboxIndexStore), which every replica reads: names are
unique among an app's running sandboxes whichever replica started them, `Sandbox.list` and `from_name` see
them all, and a terminate that reaches another replica is a request in the index, which the replica that
runs the sandbox takes (woken over the notifier, or at its next look, STOP_POLL_S)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Protocol

from modal_proto import api_pb2

from berth.clock import Clock
from berth.domain import gpu
from berth.domain.spec import SandboxSpec, TaskSpec, TunnelAddress, TunnelRequest
from berth.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted
from berth.ids import new_id, new_secret
from berth.scheduling import tunnels
from berth.scheduling.layout import LayoutBuilder
from berth.scheduling.sandbox_options import egress_allowlist, readiness_probe
from berth.scheduling.tasks import TaskManager, Unplaceable
from berth.services.buckets import bucket_mounts
from berth.services.notify import Notifier
from berth.services.results import failure
from berth.services.router_client import write_sandbox_stdin
from berth.services.signing import Signer
from berth.store.ports import ObjectStore, SandboxIndexStore, TaskStore
from berth.workers.port import SANDBOX_IDLE, SANDBOX_TIMEOUT, WORKER_LOST, NoCapacity, WorkerPort

log = logging.getLogger("berth.sandboxes")

ROUTER_AUDIENCE = "task-router"  # berth.worker.router checks grants for this audience
ROUTER_GRANT_TTL_S = 900.0
_KIND = "sandbox"
_RECHECK_S = 1.0  # how often a wait on another replica's sandbox re-reads the store
FORGET_AFTER_S = 3600.0  # finished sandboxes leave memory after this; their records stay in the object store
STOP_POLL_S = 5.0  # how often a replica looks for terminate requests for its sandboxes, between wake-ups
STOPS_KEY = "sandbox-stops"  # notified (across replicas) when a terminate is requested in the index
GS = api_pb2.GenericResult


def sandbox_key(sandbox_id: str) -> str:
    return f"sandbox:{sandbox_id}"


def new_sandbox_id() -> str:
    # 24 characters after "sb-": the client routes "sb-" + 22 characters to the V1 RPCs (_is_v1_sandbox_id).
    return new_id("sb", 24)


def new_sandbox_task_id() -> str:
    return new_id("ta", 21) + "V"  # the client's marker of a V2 sandbox's task (_is_v2_task_id)


def new_v1_sandbox_ids() -> tuple[str, str]:
    """A V1 sandbox (SandboxCreate: pty=True, gpu=, `modal shell`): an id the client routes to the V1 RPCs,
    and a task id without the V2 marker (so `modal shell <task>` asks TaskGetCommandRouterAccess)."""
    task_id = new_id("ta")
    while task_id.endswith("V"):
        task_id = new_id("ta")
    return new_id("sb", 22), task_id


class SandboxStore(ObjectStore, TaskStore, SandboxIndexStore, Protocol):
    """Sandbox records (objects), their tasks' records (is another replica's sandbox still running?), and the
    index of running sandboxes the replicas share."""


@dataclass
class SandboxRecord:
    sandbox_id: str
    app_id: str
    task_id: str
    created_at: float
    name: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    image_id: str = ""
    timeout_s: int = 300
    idle_timeout_s: int = 0
    result: api_pb2.GenericResult | None = None
    router_url: str = ""  # its worker's command router, for a replica that did not start it
    # Its open ports as exposed on its worker (they close with the task)
    tunnels: list[TunnelAddress] = field(default_factory=list)

    def to_json(self) -> bytes:
        keys = ("app_id", "task_id", "created_at", "name", "tags", "image_id", "router_url")
        body = {k: getattr(self, k) for k in keys}
        body["result"] = self.result.SerializeToString().hex() if self.result is not None else None
        body["tunnels"] = [asdict(t) for t in self.tunnels]
        return json.dumps(body).encode()

    @classmethod
    def from_json(cls, sandbox_id: str, raw: bytes) -> SandboxRecord:
        body = json.loads(raw)
        result = body.pop("result")
        opened = [TunnelAddress(**t) for t in body.pop("tunnels", [])]
        record = cls(sandbox_id, **body, tunnels=opened)
        if result is not None:
            record.result = api_pb2.GenericResult.FromString(bytes.fromhex(result))
        return record


def _check_supported(definition: api_pb2.Sandbox) -> None:
    """Arguments Berth cannot honour yet are refused by name rather than ignored."""
    unsupported = {
        "enable_snapshot": definition.enable_snapshot,
        "i6pn": definition.i6pn_enabled,
        "outbound_policy": definition.HasField("experimental_outbound_policy")
        or definition.HasField("outbound_policy"),
    }
    refused = [name for name, asked in unsupported.items() if asked]
    if refused:
        raise InvalidArgument(f"Berth does not support these Sandbox options yet: {', '.join(refused)}")


def _check_exit_snapshot(definition: api_pb2.Sandbox) -> None:
    """Filesystem snapshots of a running sandbox work (the worker's router); one taken as it exits does not yet."""
    options = {**definition.experimental_options, **definition.experimental_options_v2}
    if str(options.get("enable_exit_snapshot", "")).lower() in ("true", "1"):
        raise InvalidArgument("Berth does not support these Sandbox options yet: enable_exit_snapshot")


def _gpu_requests(definition: api_pb2.Sandbox) -> tuple[tuple[str, int], ...]:
    """gpu= takes the same placement as a function's: a worker with such a GPU free, or none (NoCapacity)."""
    config = definition.resources.gpu_config
    wanted = gpu.requested(config.gpu_type, config.count)
    return (wanted,) if wanted is not None else ()


def _placement_reason(exc: NoCapacity) -> str:
    """A placement blocker is worded for a function's queued call; a sandbox's create fails instead."""
    return str(exc).split("; the call stays queued")[0].removeprefix("Waiting for ")


def _blocks_network(definition: api_pb2.Sandbox) -> bool:
    return definition.block_network or definition.network_access.network_access_type == api_pb2.NetworkAccess.BLOCKED


def exit_result(code: int, stop_reason: str | None, timeout_s: int) -> api_pb2.GenericResult:
    if code == SANDBOX_TIMEOUT:
        return failure(f"Sandbox timed out after {timeout_s} seconds", GS.GENERIC_STATUS_TIMEOUT)
    if code == SANDBOX_IDLE:
        return failure("Sandbox was idle past its idle_timeout", GS.GENERIC_STATUS_TIMEOUT)
    if code == WORKER_LOST:
        return failure("The worker running this sandbox was lost", GS.GENERIC_STATUS_TERMINATED)
    if stop_reason is not None:
        return failure(f"Sandbox was terminated: {stop_reason}", GS.GENERIC_STATUS_TERMINATED)
    if code == 0:
        return GS(status=GS.GENERIC_STATUS_SUCCESS, exitcode=0)
    return GS(status=GS.GENERIC_STATUS_FAILURE, exitcode=code, exception=f"Sandbox exited with code {code}")


@dataclass
class V1Stdin:
    """A V1 sandbox's stdin as SandboxStdinWrite numbers it (message index) over the router's byte offsets."""

    index: int = 0
    offset: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class SandboxManager:
    def __init__(
        self,
        objects: SandboxStore,
        tasks: TaskManager,
        layouts: LayoutBuilder,
        worker: WorkerPort,
        signer: Signer,
        notifier: Notifier,
        clock: Clock,
        server_url: str,
        queue_s: float = 300.0,
    ) -> None:
        self._queue_s = queue_s  # how long a create waits for a worker slot
        self._objects = objects
        self._tasks = tasks
        self._layouts = layouts
        self._worker = worker
        self._signer = signer
        self._notifier = notifier
        self._clock = clock
        self._server_url = server_url
        self.live: dict[str, SandboxRecord] = {}  # sandboxes started by this server, running or finished
        self._stdin: dict[str, V1Stdin] = {}
        tasks.on_sandbox_exit = self.on_exit
        self.quota_check: Callable[[str], Awaitable[None]] | None = None  # by app id (services/quotas.py)

    async def create(self, req: api_pb2.SandboxCreateV2Request, v1: bool = False) -> SandboxRecord:
        """A sandbox and its task. `v1`: created by SandboxCreate (the client's V1 path), so its ids look V1."""
        definition = req.definition
        _check_supported(definition)
        _check_exit_snapshot(definition)
        ports = tunnels.requested(definition)
        self.forget_finished(self._clock.now() - FORGET_AFTER_S)
        if definition.name:
            self._check_name_free(req.app_id, definition.name)
        if self.quota_check is not None:  # ResourceExhausted past its environment's or the workspace's quota
            await self.quota_check(req.app_id)
        sandbox_id, task_id = new_v1_sandbox_ids() if v1 else (new_sandbox_id(), new_sandbox_task_id())
        record = SandboxRecord(
            sandbox_id,
            req.app_id,
            task_id,
            self._clock.now(),
            name=definition.name,
            tags={t.tag_name: t.tag_value for t in req.tags},
            image_id=definition.image_id,
            timeout_s=definition.timeout_secs or 300,
            idle_timeout_s=definition.idle_timeout_secs,
        )
        self.live[sandbox_id] = record  # before any await: holds the name against a concurrent create
        try:
            await self._index(record)
        except BaseException:
            self.live.pop(sandbox_id, None)
            raise
        try:
            spec = await self._task_spec(record, req)
        except BaseException:
            self.live.pop(sandbox_id, None)
            await self._objects.end_sandbox(sandbox_id, self._clock.now())
            raise
        await self._save(record)
        try:
            await self._tasks.start_sandbox(spec, self._queue_s)
            record.router_url = self._worker.router_url(task_id) or ""
            await self._save(record)
        except Unplaceable as exc:
            await self._finish(record, failure(f"No worker can run this sandbox: it needs {exc}"))
            if exc.resource:  # a GPU type none has: a worker that joins later may
                raise ResourceExhausted(f"No worker can run this sandbox now: it needs {exc}") from exc
            raise InvalidArgument(f"No worker can ever run this sandbox: it needs {exc}") from exc
        except NoCapacity as exc:
            await self._finish(record, failure(f"No worker had room for this sandbox: {exc}"))
            waited = f"after waiting {self._queue_s:g} s" if self._queue_s else "now"
            raise ResourceExhausted(f"No worker has room for this sandbox {waited}: {_placement_reason(exc)}") from exc
        except Exception as exc:
            await self._finish(record, failure(f"The sandbox could not start: {exc}"))
            raise InvalidArgument(f"The sandbox could not start: {exc}") from exc
        except asyncio.CancelledError:  # the client went away while the create waited for room
            await self._finish(record, failure("The sandbox's create was cancelled before it started"))
            raise
        if ports:
            await self._open_ports(record, ports)
        return record

    async def _open_ports(self, record: SandboxRecord, ports: list[TunnelRequest]) -> None:
        """A sandbox whose ports cannot be exposed is not left running without them."""
        try:
            record.tunnels = await tunnels.open_all(self._worker, record.task_id, ports)
        except BaseException as exc:
            await self._finish(record, failure(f"The sandbox's ports could not be exposed: {exc}"))
            await self._worker.stop(record.task_id, 0.0)
            raise
        await self._save(record)

    async def _index(self, record: SandboxRecord) -> None:
        """Enter a new sandbox in the replicas' index; its name must be free there too. A holder whose replica
        died without ending it (its task has ended) gives the name up."""
        for _ in range(2):
            holder = await self._objects.add_sandbox(record.sandbox_id, record.app_id, record.name, record.created_at)
            if holder is None:
                return
            if holder != record.sandbox_id and await self._holds_name(holder):
                raise AlreadyExists(f"Sandbox with name '{record.name}' already exists in this app ({holder})")
            await self._objects.end_sandbox(holder, self._clock.now())
        raise AlreadyExists(f"Sandbox with name '{record.name}' already exists in this app")

    async def _holds_name(self, sandbox_id: str) -> bool:
        try:
            return (await self.get(sandbox_id)).result is None
        except NotFound:  # entered in the index by a create that has not written its record yet
            return True

    def _check_name_free(self, app_id: str, name: str) -> None:
        for other in self.live.values():
            if other.app_id == app_id and other.name == name and other.result is None:
                raise AlreadyExists(f"Sandbox with name '{name}' already exists in this app ({other.sandbox_id})")

    async def _task_spec(self, record: SandboxRecord, req: api_pb2.SandboxCreateV2Request) -> TaskSpec:
        definition = req.definition
        env, files, binds = await self._layouts.sandbox_parts(definition)
        for source in req.secret_sources:
            if source.secret_id:
                env.update(await self._layouts.secret_env(source.secret_id))
            else:
                env.update(source.env.contents)
        env.update(req.ephemeral_secrets.contents)
        res = definition.resources
        return TaskSpec(
            task_id=record.task_id,
            function_id="",
            app_id=record.app_id,
            container_arguments=api_pb2.ContainerArguments(
                task_id=record.task_id,
                app_id=record.app_id,
                function_def=api_pb2.Function(resources=res, image_id=definition.image_id),
            ).SerializeToString(),
            server_url=self._server_url,
            secret=new_secret(),
            env=env,
            files=files,
            binds=binds,
            source_ip=await self._layouts.proxy_source_ip(definition.proxy_id),
            buckets=await bucket_mounts(
                definition.cloud_bucket_mounts, self._layouts.secret_env, req.cloud_bucket_mount_credentials
            ),
            memory_mb=res.memory_mb,
            cpu=res.milli_cpu / 1000,
            gpu_requests=_gpu_requests(definition),
            image_id=definition.image_id,
            sandbox=SandboxSpec(
                record.sandbox_id,
                tuple(definition.entrypoint_args),
                definition.workdir,
                record.timeout_s,
                record.idle_timeout_s,
                _blocks_network(definition),
                readiness_probe(definition),
                egress_allowlist(definition),
            ),
        )

    async def on_exit(self, sandbox_id: str, code: int, stop_reason: str | None) -> None:
        record = self.live.get(sandbox_id)
        if record is not None and record.result is None:
            await self._finish(record, exit_result(code, stop_reason, record.timeout_s))

    async def _finish(self, record: SandboxRecord, result: api_pb2.GenericResult) -> None:
        record.result = result
        await self._save(record)
        await self._objects.end_sandbox(record.sandbox_id, self._clock.now())
        self._notifier.notify(sandbox_key(record.sandbox_id))

    async def _save(self, record: SandboxRecord, *, keep_stored_tags: bool = True) -> None:
        """Write the record; tags another replica set meanwhile (the stored ones) are kept."""
        if keep_stored_tags:
            await self._refresh_tags(record)
        await self._objects.put_object(
            _KIND,
            record.sandbox_id,
            record.to_json(),
            self._clock.now(),
            name=record.name or None,
            app_id=record.app_id,
        )

    async def get(self, sandbox_id: str) -> SandboxRecord:
        record = self.live.get(sandbox_id)
        if record is not None:
            return record
        raw = await self._objects.get_object(_KIND, sandbox_id)
        if raw is None:
            raise NotFound(f"Sandbox {sandbox_id} not found")
        record = SandboxRecord.from_json(sandbox_id, raw)
        if record.result is None:  # started by another replica, or by a server process that is gone
            task = await self._objects.get_task(record.task_id)
            if task is None or task.ended_at is not None or task.state == "stopped":
                reason = "The server that ran this sandbox stopped, and its container with it"
                record.result = failure(reason, GS.GENERIC_STATUS_TERMINATED)
        return record

    async def wait(self, sandbox_id: str, timeout_s: float) -> SandboxRecord:
        deadline = self._clock.monotonic() + timeout_s
        while True:
            with self._notifier.listen(sandbox_key(sandbox_id)) as waiter:  # listen first, then look
                record = await self.get(sandbox_id)
                remaining = deadline - self._clock.monotonic()
                if record.result is not None or remaining <= 0:
                    return record
                if sandbox_id in self.live:  # ours: its exit notifies
                    await waiter.wait(remaining)
                    return record
                await waiter.wait(min(remaining, _RECHECK_S))

    async def terminate(self, sandbox_id: str) -> api_pb2.GenericResult | None:
        """Kills the sandbox's container; returns the result it had already finished with, if any."""
        record = await self.get(sandbox_id)
        if record.result is not None:
            return record.result
        if sandbox_id not in self.live:  # another replica runs it: ask that one, through the index
            if await self._objects.request_sandbox_stop(sandbox_id, self._clock.now()):
                self._notifier.notify(STOPS_KEY)
                return None
            record = await self.get(sandbox_id)  # it ended meanwhile
            if record.result is not None:
                return record.result
            raise FailedPrecondition(f"Sandbox {sandbox_id} could not be terminated: no replica runs it")
        task = self._tasks.tasks.get(record.task_id)
        if task is not None:
            task.stop_reason = "terminated by request"
        await self._finish(record, failure("Sandbox was terminated", GS.GENERIC_STATUS_TERMINATED))
        await self._worker.stop(record.task_id, 0.0)
        return None

    async def write_stdin(self, sandbox_id: str, index: int, data: bytes, eof: bool) -> None:
        """SandboxStdinWrite (V1): written once per message index, in order, through the task's router."""
        record = await self.get(sandbox_id)
        if record.result is not None:
            raise FailedPrecondition(f"Sandbox {sandbox_id} has finished; its stdin is closed")
        stdin = self._stdin.setdefault(sandbox_id, V1Stdin())
        async with stdin.lock:
            if index and index <= stdin.index:  # a retried write
                return
            access = self.router_access(record)
            await write_sandbox_stdin(access.url, access.jwt, record.task_id, stdin.offset, data, eof)
            stdin.index, stdin.offset = index, stdin.offset + len(data)

    def router_access(self, record: SandboxRecord) -> api_pb2.CommandRouterAccess:
        return self.task_router_access(record.task_id, sandbox_id=record.sandbox_id, known_url=record.router_url)

    def task_router_access(
        self, task_id: str, sandbox_id: str = "", known_url: str = ""
    ) -> api_pb2.CommandRouterAccess:
        """A grant for the task's router. Every replica signs with the same key, so one that did not start the
        sandbox hands out its recorded router URL."""
        url = self._worker.router_url(task_id) or known_url
        if not url:
            raise NotFound(f"Task {task_id} is not running on a worker with a command router")
        jwt = self._signer.issue(task_id, ROUTER_AUDIENCE, ROUTER_GRANT_TTL_S, task_id=task_id, sandbox_id=sandbox_id)
        return api_pb2.CommandRouterAccess(url=url, jwt=jwt)

    async def tunnel_data(self, sandbox_id: str) -> list[api_pb2.TunnelData]:
        """A running sandbox's open ports; none once it has finished (its listeners closed with it)."""
        record = await self.get(sandbox_id)
        if record.result is not None:
            return []
        return [tunnels.to_proto(t) for t in record.tunnels]

    async def run_stop_requests(self) -> None:
        """Terminate this replica's sandboxes that another replica was asked to terminate."""
        while True:
            with self._notifier.listen(STOPS_KEY) as waiter:  # listen first, then look
                try:
                    await self.take_stop_requests()
                except Exception:
                    log.exception("could not read the sandbox terminate requests")
                await waiter.wait(STOP_POLL_S)

    async def take_stop_requests(self) -> None:
        mine = [r.sandbox_id for r in self.live.values() if r.result is None]
        for sandbox_id in await self._objects.sandbox_stops_requested(mine):
            log.info("terminating sandbox %s, as asked through another replica", sandbox_id)
            await self.terminate(sandbox_id)

    async def _running_record(self, sandbox_id: str) -> SandboxRecord | None:
        """An indexed sandbox's record while it runs; one whose replica died without ending it leaves the index."""
        try:
            record = await self.get(sandbox_id)
        except NotFound:
            return None
        if record.result is None:
            if sandbox_id in self.live:  # ours: tags may have been set through another replica
                await self._refresh_tags(record)
            return record
        if sandbox_id not in self.live:
            await self._objects.end_sandbox(sandbox_id, self._clock.now())
        return None

    async def by_name(self, app_id: str, name: str) -> SandboxRecord:
        """The app's running sandbox of that name, whichever replica started it."""
        for record in sorted(self.live.values(), key=lambda r: r.created_at, reverse=True):
            if record.app_id == app_id and record.name == name and record.result is None:
                return record
        sandbox_id = await self._objects.running_sandbox_named(app_id, name)
        elsewhere = await self._running_record(sandbox_id) if sandbox_id else None
        if elsewhere is None:
            raise NotFound(f"Sandbox with name '{name}' not found")
        return elsewhere

    async def running(self, app_id: str, tags: dict[str, str], before: float, limit: int) -> list[SandboxRecord]:
        """Running sandboxes of every replica, newest first: the app's (every app's for ""), with these tags."""
        found: list[SandboxRecord] = []
        for sandbox_id in await self._objects.running_sandboxes(app_id):
            record = await self._running_record(sandbox_id)
            if (
                record is not None
                and all(record.tags.get(k) == v for k, v in tags.items())
                and (not before or record.created_at < before)
            ):
                found.append(record)
                if len(found) >= limit:
                    break
        return found

    async def _refresh_tags(self, record: SandboxRecord) -> None:
        """The stored record's tags are the truth: any replica may set them (set_tags)."""
        raw = await self._objects.get_object(_KIND, record.sandbox_id)
        if raw is not None:
            record.tags = SandboxRecord.from_json(record.sandbox_id, raw).tags

    async def set_tags(self, sandbox_id: str, tags: dict[str, str]) -> None:
        record = await self.get(sandbox_id)
        record.tags = dict(tags)
        await self._save(record, keep_stored_tags=False)

    async def tags(self, sandbox_id: str) -> dict[str, str]:
        record = await self.get(sandbox_id)
        await self._refresh_tags(record)
        return record.tags

    def forget_finished(self, older_than: float) -> None:
        for sandbox_id, record in list(self.live.items()):
            if record.result is not None and record.created_at < older_than:
                self.live.pop(sandbox_id, None)
                self._stdin.pop(sandbox_id, None)
