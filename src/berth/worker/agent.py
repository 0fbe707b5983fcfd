"""The local worker: prepares a task directory, starts the container on the configured runtime,
pumps its stdout/stderr to the log sink and reports its exit."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from berth.clock import Clock, SystemClock
from berth.domain.images import ImageBuildSpec, ImageInfo
from berth.domain.spec import TaskSpec, TunnelAddress, TunnelRequest, WorkerCapacity
from berth.errors import FailedPrecondition, InvalidArgument
from berth.worker.builder import BuildFailed
from berth.worker.execs import OrderedStdin, RunningCommand, pump
from berth.worker.files import FileSource
from berth.worker.gpu import GpuPool, visible_devices_env
from berth.worker.images import ImageWorker
from berth.worker.probes import start_readiness
from berth.worker.pty import Pty
from berth.worker.router import CommandRouter, SecretResolver
from berth.worker.runtime import Container, Runtime
from berth.worker.session import TaskSession
from berth.worker.snapshots import pack_upper
from berth.worker.tunnels import NoTunnels, Tunnels
from berth.worker.usage import UsageMeter, UsageSink
from berth.workers.port import SANDBOX_IDLE, SANDBOX_TIMEOUT, BuildLog, NoCapacity

log = logging.getLogger("berth.worker")

OutputSink = Callable[[TaskSpec, int, str], None]
ExitSink = Callable[[TaskSpec, int], Awaitable[None]]
# Publishes a packed filesystem snapshot as an image: (the sandbox's image id, the archive, its sha256) → the
# new image's id. The control plane keeps the archive (blob store) and asks a worker to build the image.
SnapshotSink = Callable[[str, Path, str], Awaitable[str]]

_DRAIN_S = 5.0
_WATCHDOG_S = 0.5
_KEEP_FINISHED = 256
_KEEP_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE")


def memory_mb() -> int:
    """This host's memory (MemTotal), 0 where /proc/meminfo cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 0


@dataclass
class _Running:
    spec: TaskSpec
    container: Container
    watcher: asyncio.Task[None]


class LocalWorker:
    """The worker port (berth.workers.port) served in-process, for `berth up` and for `berth worker`."""

    def __init__(
        self,
        runtime: Runtime,
        task_root: Path,
        on_output: OutputSink,
        on_exit: ExitSink,
        files: FileSource,
        gpus: GpuPool | None = None,
        images: ImageWorker | None = None,
        slots: int = 16,
        clock: Clock | None = None,
        router_host: str = "127.0.0.1",
        router_advertise: str | None = None,
    ) -> None:
        self.slots = slots
        self.runtime = runtime
        self.files = files
        self.images = images
        self.gpus = gpus or GpuPool([])
        self._root = task_root
        self._on_output = on_output
        self._on_exit = on_exit
        self._running: dict[str, _Running] = {}
        self._starting: dict[str, asyncio.Future[Container]] = {}
        self._held: dict[str, str] = {}  # task → its cluster: a slot held for a member that has not started yet
        self._closing = False
        self._clock = clock or SystemClock()
        self.sessions: dict[str, TaskSession] = {}
        # Sessions of tasks that exited, kept a while: a client reads a finished sandbox's output after wait().
        self._finished: OrderedDict[str, TaskSession] = OrderedDict()
        self._ended: dict[str, int] = {}  # task → why the worker ended it (sandbox timeouts)
        self.router = CommandRouter(self.session, self._clock)
        self.router.snapshots = self.snapshot_filesystem
        self._snapshot_sink: SnapshotSink | None = None
        self._router_host = router_host
        self._router_advertise = router_advertise
        self._router_starting = asyncio.Lock()  # containers started at once (a cluster) start it once
        self.tunnels: Tunnels | NoTunnels = NoTunnels()
        self.meter: UsageMeter | None = None

    def meter_usage(self, sink: UsageSink) -> None:
        """Measure what each container uses, second by second, and hand it to `sink` (berth.worker.usage)."""
        self.meter = UsageMeter(sink, self._clock)

    # the command router (sandbox exec and stdio)
    async def start_router(self, port: int = 0) -> str:
        async with self._router_starting:
            if not self.router.url:
                await self.router.start(self._router_host, port, self._router_advertise)
        return self.router.url

    def router_address(self, host: str, advertise: str | None) -> None:
        """Where the router listens and the address clients are told (before it starts)."""
        self._router_host, self._router_advertise = host, advertise

    # tunnels (a sandbox's open ports, modal.forward)
    @property
    def tunnel_host(self) -> str:
        """The address clients are told for tunnels: the router's."""
        return self._router_advertise or self._router_host

    def serve_tunnels(self, cert: Path, key: Path) -> None:
        """Tunnels listen where the router does; `cert` (from Berth's CA) must name tunnel_host. A certificate
        handed over again (a remote worker that joins again) serves new tunnels; open ones stay as they are."""
        if isinstance(self.tunnels, Tunnels):
            self.tunnels.use_certificate(cert, key)
        else:
            self.tunnels = Tunnels(self._router_host, self.tunnel_host, cert, key)

    def serve_tunnels_pem(self, cert: bytes, key: bytes) -> None:
        """A remote worker's tunnel certificate, handed over by the server that holds the CA."""
        tls_dir = self._root.parent / "tunnel-tls"
        tls_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        cert_path, key_path = tls_dir / "tunnels.pem", tls_dir / "tunnels.key"
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key)
        cert_path.write_bytes(cert)
        self.serve_tunnels(cert_path, key_path)

    async def open_tunnel(self, task_id: str, request: TunnelRequest) -> TunnelAddress:
        if task_id not in self._running:
            raise FailedPrecondition(f"Task {task_id} is not running on this worker")
        address = self.runtime.address(task_id)
        if address is None:
            raise InvalidArgument(f"Task {task_id} has no network to expose port {request.port} of (block_network)")
        return await self.tunnels.open(task_id, address, request)

    async def close_tunnel(self, task_id: str, port: int) -> bool:
        return await self.tunnels.close(task_id, port)

    def session(self, task_id: str) -> TaskSession | None:
        return self.sessions.get(task_id) or self._finished.get(task_id)

    def router_url(self, task_id: str) -> str | None:
        return self.router.url if self.session(task_id) is not None and self.router.url else None

    def trust_grants(self, public_pem: bytes) -> None:
        self.router.public_pem = public_pem

    def resolve_secrets(self, resolver: SecretResolver) -> None:
        self.router.secrets = resolver

    def publish_snapshots(self, sink: SnapshotSink) -> None:
        self._snapshot_sink = sink

    async def snapshot_filesystem(self, task_id: str) -> str:
        """Sandbox.snapshot_filesystem(): the running sandbox's own changes, packed as one layer over its image
        and published as a new image; returns the image's id."""
        running = self._running.get(task_id)
        if running is None:
            raise FailedPrecondition(f"Task {task_id} is not running: only a running sandbox can be snapshotted")
        if self._snapshot_sink is None:
            raise InvalidArgument("Sandbox.snapshot_filesystem(): this worker has nowhere to publish snapshots")
        changes = self.runtime.changes(task_id)
        if changes is None:
            raise InvalidArgument(
                f"Sandbox.snapshot_filesystem() needs an OCI runtime (crun, runc or runsc): the {self.runtime.name} "
                "runtime gives a sandbox no filesystem of its own"
            )
        upper, id_shift = changes
        archive = self._root / task_id / f"snapshot-{secrets.token_hex(6)}.tar"
        try:
            sha256 = await asyncio.to_thread(pack_upper, upper, archive, id_shift)
            return await self._snapshot_sink(running.spec.image_id, archive, sha256)
        finally:
            archive.unlink(missing_ok=True)

    @property
    def running_count(self) -> int:
        return len(self._running)

    def running_ids(self) -> list[str]:
        return [*self._running, *self._starting]

    @property
    def builds_images(self) -> bool:
        return self.images is not None

    def free_slots(self) -> int:
        return self.slots - len(self._running) - len(self._starting) - len(self._held)

    def reserve_cluster(
        self, cluster_id: str, task_ids: list[str], requests: list[tuple[str, int]], memory_mb: int, cpu: float
    ) -> None:
        """All of a cluster's members run on this one worker: a slot is held for each until it starts."""
        free = self.free_slots()
        if free < len(task_ids):
            raise NoCapacity(f"this worker has room for {free} of the cluster's {len(task_ids)} containers")
        self._held.update(dict.fromkeys(task_ids, cluster_id))

    def release_cluster(self, cluster_id: str) -> None:
        for task_id in [t for t, c in self._held.items() if c == cluster_id]:
            del self._held[task_id]

    def placement_blocker(self, requests: list[tuple[str, int]], memory_mb: int, cpu: float = 0.0) -> str | None:
        return self.gpus.blocker(requests)

    def capacity(self) -> list[WorkerCapacity]:
        specs = [r.spec for r in self._running.values()]
        return [
            WorkerCapacity(
                "local",
                self.slots,
                self.slots - self.free_slots(),
                float(os.cpu_count() or 1),
                sum(s.cpu for s in specs),
                memory_mb(),
                sum(s.memory_mb for s in specs),
            )
        ]

    async def build_image(self, spec: ImageBuildSpec, on_log: BuildLog) -> ImageInfo:
        if self.images is None:
            raise BuildFailed(f"The {self.runtime.name} runtime builds no images")
        return await self.images.build(spec, on_log)

    def image_info(self, image_id: str) -> ImageInfo | None:
        return self.images.info(image_id) if self.images is not None else None

    async def forget_images(self, image_ids: list[str]) -> list[str]:
        if self.images is None:
            return []
        return await asyncio.to_thread(self.images.forget, image_ids)

    def container_env(self, spec: TaskSpec, workdir: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k in _KEEP_ENV}
        env.update(spec.env)
        if spec.sandbox is not None:  # runs its image's command, not the modal entrypoint: no identity
            env.update({"HOME": str(workdir / "root"), "PIP_CONFIG_FILE": "/dev/null"})
            return env
        env.update(
            {
                "HOME": str(workdir / "root"),
                "PYTHONUNBUFFERED": "1",
                "PIP_CONFIG_FILE": "/dev/null",
                "MODAL_SERVER_URL": spec.server_url,
                "MODAL_IS_REMOTE": "1",
                "MODAL_TASK_ID": spec.task_id,
                "MODAL_CONTAINER_ARGUMENTS_PATH": str(workdir / "container_arguments.bin"),
                "MODAL_CONFIG_PATH": str(workdir / "modal.toml"),
                "MODAL_OVERRIDE_HEADERS": f"x-berth-task-id:{spec.task_id},x-berth-task-secret:{spec.secret}",
            }
        )
        return env

    async def start(self, spec: TaskSpec) -> None:
        if self._closing:
            raise RuntimeError("the worker is shutting down")
        await self.start_router()  # `modal container exec` reaches function containers through it too
        await self.files.fetch(f.sha256 for f in spec.files)
        workdir = self._root / spec.task_id
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "container_arguments.bin").write_bytes(spec.container_arguments)
        env = self.container_env(spec, workdir)
        if spec.gpu_requests:
            spec = replace(spec, gpus=tuple(self.gpus.take(spec.task_id, list(spec.gpu_requests))))
            env.update(visible_devices_env(list(spec.gpus)))
        # The start runs on even if the caller is cancelled (the server stopping mid-launch): a container
        # that came up is then registered, so shutdown() stops it instead of leaving it running.
        starting = asyncio.ensure_future(self.runtime.start(spec, workdir, env))
        self._starting[spec.task_id] = starting
        self._held.pop(spec.task_id, None)  # its slot now counts as starting
        try:
            container = await asyncio.shield(starting)
        except asyncio.CancelledError:
            try:
                self._register(spec, await starting, workdir)
            except Exception:
                self.gpus.release(spec.task_id)
            raise
        except BaseException:
            self.gpus.release(spec.task_id)
            raise
        finally:
            self._starting.pop(spec.task_id, None)
        self._register(spec, container, workdir)

    def _register(self, spec: TaskSpec, container: Container, workdir: Path) -> None:
        session = TaskSession(spec.task_id, self._clock, self._exec_starter(spec, workdir), self.runtime.exec_exit_code)
        if spec.sandbox is not None:
            session.stdin = OrderedStdin(container.stdin)
            if spec.sandbox.readiness_probe is not None:
                session.readiness = start_readiness(
                    spec.sandbox.readiness_probe,
                    self._exec_starter(spec, workdir),
                    lambda: self.runtime.netns_path(spec.task_id),
                    self._clock,
                )
        self.sessions[spec.task_id] = session
        if self.meter is not None:
            self.meter.track(spec, lambda: self.runtime.usage(spec.task_id))
        watcher = asyncio.create_task(self._watch(spec, container, workdir, session))
        self._running[spec.task_id] = _Running(spec, container, watcher)

    def _exec_starter(self, spec: TaskSpec, workdir: Path) -> Any:
        async def start(
            argv: list[str], env: dict[str, str], cwd: str | None, tty: Pty | None
        ) -> tuple[RunningCommand, Callable[[int], None]]:
            return await self.runtime.exec(spec, workdir, argv, env, cwd, tty)

        return start

    async def _pump(self, spec: TaskSpec, stream: asyncio.StreamReader, fd: int) -> None:
        while chunk := await stream.read(65536):
            self._on_output(spec, fd, chunk.decode("utf-8", errors="replace"))

    def _pumps(self, spec: TaskSpec, container: Container, session: TaskSession) -> asyncio.Future[Any]:
        """Container output goes to the logs; a sandbox's is also kept for SandboxStdioReadV2."""
        if spec.sandbox is None:
            return asyncio.gather(self._pump(spec, container.stdout, 1), self._pump(spec, container.stderr, 2))

        def tee(fd: int) -> Callable[[bytes], None]:
            return lambda chunk: self._on_output(spec, fd, chunk.decode("utf-8", errors="replace"))

        return asyncio.gather(
            pump(container.stdout, session.stdout, tee(1)), pump(container.stderr, session.stderr, tee(2))
        )

    async def _watchdog(self, spec: TaskSpec, container: Container, session: TaskSession) -> None:
        """A sandbox past its timeout, or idle (no exec, no stdio) past its idle timeout, is killed."""
        assert spec.sandbox is not None
        started = self._clock.monotonic()
        timeout, idle = spec.sandbox.timeout_s, spec.sandbox.idle_timeout_s
        while True:
            await asyncio.sleep(_WATCHDOG_S)
            if timeout and self._clock.monotonic() - started >= timeout:
                self._ended[spec.task_id] = SANDBOX_TIMEOUT
            elif idle and session.idle_for() >= idle:
                self._ended[spec.task_id] = SANDBOX_IDLE
            else:
                continue
            container.signal(signal.SIGKILL)
            return

    async def _watch(self, spec: TaskSpec, container: Container, workdir: Path, session: TaskSession) -> None:
        pumps = self._pumps(spec, container, session)
        watchdog = asyncio.ensure_future(self._watchdog(spec, container, session)) if spec.sandbox else None
        code = await container.wait()
        if self.meter is not None:  # before cleanup removes the container's cgroup, and its counters
            self.meter.finish(spec.task_id)
        if watchdog is not None:
            watchdog.cancel()
        await self.tunnels.close_task(spec.task_id)
        code = self._ended.pop(spec.task_id, code)
        container.exited()
        session.stdin.close()
        await session.close()
        try:  # the pipes close once leftovers are gone; never let a stray holder keep the task alive
            await asyncio.wait_for(asyncio.shield(pumps), _DRAIN_S)
        except TimeoutError:
            pumps.cancel()
        self._running.pop(spec.task_id, None)
        self._finished[spec.task_id] = self.sessions.pop(spec.task_id, session)
        while len(self._finished) > _KEEP_FINISHED:
            self._finished.popitem(last=False)
        self.gpus.release(spec.task_id)
        try:
            await self._on_exit(spec, code)
        except Exception:
            log.exception("exit handler for task %s failed", spec.task_id)
        await self.runtime.cleanup(spec, workdir)

    def signal(self, task_id: str, signum: int) -> None:
        running = self._running.get(task_id)
        if running is not None:
            if self.meter is not None:  # a signal may end it: measure up to now first
                self.meter.sample(task_id)
            running.container.signal(signum)

    async def stop(self, task_id: str, grace_s: float) -> None:
        """SIGTERM, then SIGKILL once the grace period passes."""
        running = self._running.get(task_id)
        if running is None:
            return
        if self.meter is not None:
            self.meter.sample(task_id)
        running.container.signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(running.watcher), grace_s)
        except TimeoutError:
            running.container.signal(signal.SIGKILL)
            await asyncio.shield(running.watcher)

    async def stop_after(self, task_id: str, grace_s: float) -> None:
        """Wait up to grace_s for the task to exit by itself, then stop it."""
        running = self._running.get(task_id)
        if running is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(running.watcher), grace_s)
        except TimeoutError:
            await self.stop(task_id, 2.0)

    async def shutdown(self, grace_s: float = 5.0) -> None:
        self._closing = True
        await asyncio.gather(*self._starting.values(), return_exceptions=True)  # they register or fail
        await asyncio.gather(*(self.stop(tid, grace_s) for tid in list(self._running)), return_exceptions=True)
        await self.tunnels.close_all()
        await self.runtime.close()
        await self.router.close()
        if self.meter is not None:
            await self.meter.close()
