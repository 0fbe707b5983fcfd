"""Which sandboxes and function containers a worker keeps started ahead (the warm pools), and how many: the
bookkeeping only; the OCI runtime starts, hands over and tears down the containers.

A pooled container is a sandbox container with everything a start does done (its disk, overlay, cgroup,
network namespace and rules, `crun run`), whose berth-execd waits for its entrypoint (`execd --wait`) and
then becomes it, as in a fresh sandbox. On runsc, which can pass no fd in, execd reads the entrypoint from its
stdin instead (`execd --stdin`, see OciRuntime._hand_over_gvisor).
`Sandbox.create` then takes one and hands it the command, environment and working directory, so a create
costs a message instead of a start. Each is used once: it ends with its sandbox, like any other.

Only requests whose container would be the same as the pooled one take from the pool: the same image and
the same cpu/memory limits, with no volumes, mounted files, GPUs, blocked network or egress allowlist
(those are set up before a container runs, so such requests start a container of their own). An image's
pool is filled once a sandbox of it has been created, and emptied once none was for `idle_s`.

Function containers have a pool of their own (a PoolBook of its own, `function_pool_key`): the same container
set up ahead, whose execd has already started Berth's container loop in standby (`berth_loop.py --standby`: a
Python that has imported modal and its container entrypoint and waits for its task). At hand-over the worker
writes the task's files and container arguments into it, names it, and sends the loop its environment and
working directory; the loop then runs modal's entrypoint exactly as a fresh container does. What must be
there before the process starts (volumes, GPUs, bucket mounts, a proxy, a cluster's link, files outside
/root, environment that Python or modal read when they start) makes a function start its own container."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from modal_proto import api_pb2

from berth.domain.spec import TaskSpec

T = TypeVar("T")
# A refill waits this long after a take: the sandbox just handed over gets the CPU for its first commands,
# and the next create (rarely sooner) finds the pool full again.
REFILL_DELAY_S = 0.25
# A function container's refill waits longer: its standby Python's imports take a core for a few hundred ms,
# which the container just handed over needs more.
FUNCTION_REFILL_DELAY_S = 1.0
# Files a pooled function container takes at hand-over: the app's own source and local Python sources land
# under /root, where nothing the standby Python imported comes from.
HANDOVER_FILES_ROOT = "/root/"
# Environment the standby Python (or modal, as it is imported) has already read before hand-over: a function
# whose environment sets any of these starts its own container.
_STARTUP_ENV_PREFIXES = ("PYTHON", "LD_", "MALLOC_", "GRPC_")
_STARTUP_ENV = frozenset({"MODAL_LOGLEVEL", "MODAL_CONFIG_PATH", "MODAL_PROFILE", "MODAL_TELEMETRY_SOCKET", "HOME"})


@dataclass(frozen=True)
class PoolKey:
    """What makes two sandbox containers interchangeable before their entrypoint runs."""

    image_id: str
    memory_mb: int
    cpu: float
    # a memory-snapshot function's own standby containers (berth.worker.standby): what they were started for
    # (its container arguments, but the task's, and its files), hashed
    snapshot_of: str = ""


@dataclass(frozen=True)
class PoolSettings:
    per_image: int = 2  # containers kept ready per recently used image (and limits); 0: no pool
    max_total: int = 8  # across images
    max_memory_mb: int = 4096  # the memory limits of the containers kept ready, summed
    idle_s: float = 600.0  # an image with no sandbox created for this long has its pool emptied


def pool_key(spec: TaskSpec, memory_mb: int, cpu: float) -> PoolKey | None:
    """The pool a request can take from; None when it needs a container of its own."""
    sb = spec.sandbox
    if sb is None or sb.block_network or sb.egress is not None:
        return None
    if spec.binds or spec.files or spec.gpu_requests or spec.gpus or spec.buckets or spec.source_ip:
        return None  # volumes, mounts, GPUs, bucket mounts and a proxy's source address are set up at start
    return PoolKey(spec.image_id, memory_mb, cpu)


def function_pool_key(spec: TaskSpec, memory_mb: int, cpu: float) -> PoolKey | None:
    """The function container pool a task can take from; None when it needs a container of its own."""
    if spec.sandbox is not None or spec.cluster is not None:
        return None
    if spec.binds or spec.gpu_requests or spec.gpus or spec.buckets or spec.source_ip:
        return None  # volumes, GPUs, bucket mounts and a proxy's source address are set up at start
    if any(not f.remote_path.startswith(HANDOVER_FILES_ROOT) for f in spec.files):
        return None
    if any(k.startswith(_STARTUP_ENV_PREFIXES) or k in _STARTUP_ENV for k in spec.env):
        return None
    args = api_pb2.ContainerArguments.FromString(spec.container_arguments)
    if args.function_def.block_network:  # a network namespace with only lo is made at start
        return None
    # a server (modal's run_server) never checkpoints: its containers take a plain standby
    if not args.function_def.checkpointing_enabled or args.function_def.is_server:
        return PoolKey(spec.image_id, memory_mb, cpu)
    return PoolKey(spec.image_id, memory_mb, cpu, snapshot_of(spec, args))


def snapshot_of(spec: TaskSpec, args: api_pb2.ContainerArguments) -> str:
    """What a memory-snapshot standby is a snapshot of: everything of its container arguments but the task's
    own fields, and its files."""
    general = api_pb2.ContainerArguments()
    general.CopyFrom(args)
    general.task_id = ""
    general.checkpoint_id = ""
    digest = hashlib.sha256(general.SerializeToString(deterministic=True))
    for f in sorted(spec.files, key=lambda f: f.remote_path):
        digest.update(f"{f.remote_path}\0{f.sha256}\0{f.mode}\0".encode())
    return digest.hexdigest()


@dataclass
class _Pool(Generic[T]):
    ready: list[T] = field(default_factory=list)
    starting: int = 0
    used_at: float = 0.0


class PoolBook(Generic[T]):
    """The ready containers per key, and what to start or drop next."""

    def __init__(self, settings: PoolSettings, now: Callable[[], float]) -> None:
        self.settings = settings
        self._now = now
        self._pools: dict[PoolKey, _Pool[T]] = {}

    def take(self, key: PoolKey) -> T | None:
        """A ready container for a request of `key` (None: start one), and the key counts as used now."""
        pool = self._pools.setdefault(key, _Pool())
        pool.used_at = self._now()
        return pool.ready.pop(0) if pool.ready else None

    def _held(self) -> tuple[int, int]:
        count = sum(len(p.ready) + p.starting for p in self._pools.values())
        memory = sum((len(p.ready) + p.starting) * k.memory_mb for k, p in self._pools.items())
        return count, memory

    def to_start(self, key: PoolKey, want: int = 0) -> bool:
        """Whether to start one more for `key` now (and if so, it counts as starting); `want`: more than
        per_image for this key (a function's buffer_containers), within the caps."""
        pool = self._pools.get(key)
        if pool is None or self._now() - pool.used_at > self.settings.idle_s or self.settings.per_image <= 0:
            return False
        count, memory = self._held()
        if len(pool.ready) + pool.starting >= max(self.settings.per_image, want) or count >= self.settings.max_total:
            return False
        if memory + key.memory_mb > self.settings.max_memory_mb:
            return False
        pool.starting += 1
        return True

    def started(self, key: PoolKey, item: T | None) -> bool:
        """One that to_start allowed is up (item) or failed (None); False: nobody wants it any more."""
        pool = self._pools.get(key)
        if pool is None:
            return False
        pool.starting -= 1
        if item is None:
            return True
        if self._now() - pool.used_at > self.settings.idle_s:
            return False
        pool.ready.append(item)
        return True

    def drop_idle(self) -> list[T]:
        """The ready containers of keys not used for idle_s, taken out of the book (to tear down)."""
        gone: list[T] = []
        for key, pool in list(self._pools.items()):
            if self._now() - pool.used_at > self.settings.idle_s:
                gone += pool.ready
                pool.ready = []
                if pool.starting == 0:
                    del self._pools[key]
        return gone

    def drop_all(self) -> list[T]:
        gone = [item for pool in self._pools.values() for item in pool.ready]
        self._pools.clear()
        return gone

    def remove(self, item: T) -> None:
        """A ready container that ended by itself."""
        for pool in self._pools.values():
            if item in pool.ready:
                pool.ready.remove(item)
