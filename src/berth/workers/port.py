"""The worker port: the one interface through which scheduling and the image service drive workers.
`berth.worker.agent.LocalWorker` implements it in-process for `berth up`; a remote worker speaks the same
operations over the network. Everything that crosses it is plain data from `berth.domain`: a TaskSpec
names files by content, never by a path on the server's disk.

Events come back through the sinks a worker is built with (container output, container exit) and
through the log callback of `build_image`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from berth.domain.images import ImageBuildSpec, ImageInfo
from berth.domain.spec import TaskSpec

BuildLog = Callable[[str], None]


class WorkerPort(Protocol):
    @property
    def builds_images(self) -> bool:
        """False where images are not built (the process runtime runs every image on the worker's Python)."""

    def gpu_blocker(self, requests: list[tuple[str, int]]) -> str | None:
        """Why a container with these GPU requests (best first) cannot start now; None when it can."""

    async def start(self, spec: TaskSpec) -> None:
        """Start the task's container; raises when it cannot be started."""

    def signal(self, task_id: str, signum: int) -> None: ...

    async def stop(self, task_id: str, grace_s: float) -> None:
        """SIGTERM, then SIGKILL once the grace period passes; returns once the container exited."""

    async def stop_after(self, task_id: str, grace_s: float) -> None:
        """Wait up to grace_s for the task to exit by itself, then stop it."""

    async def shutdown(self, grace_s: float = 5.0) -> None: ...

    async def build_image(self, spec: ImageBuildSpec, on_log: BuildLog) -> ImageInfo:
        """Build (or find in this worker's layer cache) the image; raises BuildFailed-like errors whose
        message is the user-facing reason."""

    def image_info(self, image_id: str) -> ImageInfo | None:
        """The image if it is built on this worker."""
