"""The local worker: prepares a task directory, starts the container on the configured runtime,
pumps its stdout/stderr to the log sink and reports its exit."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path

from berth.domain.images import ImageBuildSpec, ImageInfo
from berth.domain.spec import TaskSpec, WorkerCapacity
from berth.worker.builder import BuildFailed
from berth.worker.files import FileSource
from berth.worker.gpu import GpuPool, visible_devices_env
from berth.worker.images import ImageWorker
from berth.worker.runtime import Container, Runtime
from berth.workers.port import BuildLog

log = logging.getLogger("berth.worker")

OutputSink = Callable[[TaskSpec, int, str], None]
ExitSink = Callable[[TaskSpec, int], Awaitable[None]]

_DRAIN_S = 5.0
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
        self._closing = False

    @property
    def running_count(self) -> int:
        return len(self._running)

    def running_ids(self) -> list[str]:
        return [*self._running, *self._starting]

    @property
    def builds_images(self) -> bool:
        return self.images is not None

    def free_slots(self) -> int:
        return self.slots - len(self._running) - len(self._starting)

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

    def container_env(self, spec: TaskSpec, workdir: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k in _KEEP_ENV}
        env.update(spec.env)
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
        watcher = asyncio.create_task(self._watch(spec, container, workdir))
        self._running[spec.task_id] = _Running(spec, container, watcher)

    async def _pump(self, spec: TaskSpec, stream: asyncio.StreamReader, fd: int) -> None:
        while chunk := await stream.read(65536):
            self._on_output(spec, fd, chunk.decode("utf-8", errors="replace"))

    async def _watch(self, spec: TaskSpec, container: Container, workdir: Path) -> None:
        pumps = asyncio.gather(self._pump(spec, container.stdout, 1), self._pump(spec, container.stderr, 2))
        code = await container.wait()
        container.exited()
        try:  # the pipes close once leftovers are gone; never let a stray holder keep the task alive
            await asyncio.wait_for(asyncio.shield(pumps), _DRAIN_S)
        except TimeoutError:
            pumps.cancel()
        self._running.pop(spec.task_id, None)
        self.gpus.release(spec.task_id)
        try:
            await self._on_exit(spec, code)
        except Exception:
            log.exception("exit handler for task %s failed", spec.task_id)
        await self.runtime.cleanup(spec, workdir)

    def signal(self, task_id: str, signum: int) -> None:
        running = self._running.get(task_id)
        if running is not None:
            running.container.signal(signum)

    async def stop(self, task_id: str, grace_s: float) -> None:
        """SIGTERM, then SIGKILL once the grace period passes."""
        running = self._running.get(task_id)
        if running is None:
            return
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
