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
from berth.domain.spec import TaskSpec, TunnelAddress, TunnelRequest, WorkerCapacity

BuildLog = Callable[[str], None]

# The exit code a task gets when its worker was lost (killed, or cut off past its lease): the task did
# nothing wrong, so what it held goes back to the queue without counting an attempt.
WORKER_LOST = -1000
# The exit codes a worker reports for a sandbox it ended itself: past its timeout, or idle past its idle timeout.
SANDBOX_TIMEOUT = -1001
SANDBOX_IDLE = -1002


class NoCapacity(Exception):
    """No worker can take this container now (placement raced with another); try again later."""


class TunnelsUnavailable(Exception):
    """This worker cannot expose a container's ports (the message says why and names the option)."""


class WorkerLost(ConnectionError):
    """The worker an operation was sent to went away before it answered."""


class WorkerPort(Protocol):
    @property
    def builds_images(self) -> bool:
        """False where images are not built (the process runtime runs every image on the worker's Python)."""

    def free_slots(self) -> int:
        """How many more containers the workers take now."""

    def capacity(self) -> list[WorkerCapacity]:
        """Each worker's slots, CPUs and memory, and what its containers hold of them."""

    def placement_blocker(self, requests: list[tuple[str, int]], memory_mb: int, cpu: float = 0.0) -> str | None:
        """Why a container with these GPU requests (best first), memory and CPUs cannot start now; None when
        it can."""

    async def start(self, spec: TaskSpec) -> None:
        """Start the task's container; NoCapacity when no worker has room after all, other errors when
        the container cannot start."""

    def reserve_cluster(
        self, cluster_id: str, task_ids: list[str], requests: list[tuple[str, int]], memory_mb: int, cpu: float
    ) -> None:
        """Hold room for every member of a gang-scheduled cluster (`task_ids`, by rank) before any of them starts,
        all or none: NoCapacity when the workers cannot take them all now. start() then puts each member where
        its room is held, and tells it which other workers hold members (ClusterSpec.peers)."""

    def release_cluster(self, cluster_id: str) -> None:
        """Give back the room still held for members of the cluster that did not start."""

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

    async def forget_images(self, image_ids: list[str]) -> list[str]:
        """Drop these images and collect their layers that no other image on the host uses; returns the
        layer directories removed."""

    def router_url(self, task_id: str) -> str | None:
        """Where clients reach the TaskCommandRouter of the worker that runs this task; None when no worker
        runs it (or its router is not up)."""

    async def open_tunnel(self, task_id: str, request: TunnelRequest) -> TunnelAddress:
        """Expose one port of the running task's container on its worker's host (TLS, and plain TCP too when
        asked); it closes when the task exits or on close_tunnel."""

    async def close_tunnel(self, task_id: str, port: int) -> bool:
        """Whether that port of the task was exposed (it is not any more)."""

    def trust_grants(self, public_pem: bytes) -> None:
        """The key the workers' routers check client grants (JWTs) with: the server's public signing key."""
