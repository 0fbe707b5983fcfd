"""The task registry: which containers exist, what each one holds, and what happens when one exits."""

from __future__ import annotations

import asyncio
import collections
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from modal_proto import api_pb2

from berth import client_warnings
from berth.clock import Clock
from berth.domain import gpu
from berth.domain.cluster import ClusterSpec
from berth.domain.spec import TaskSpec, WorkerCapacity
from berth.ids import new_id, new_secret, secret_digest, secret_matches
from berth.scheduling.clusters import Cluster, Clusters, cluster_size
from berth.scheduling.clusters import never_fits as cluster_never_fits
from berth.scheduling.clusters import room_now as cluster_room_now
from berth.scheduling.layout import LayoutBuilder
from berth.services.inputs import SCHEDULER_KEY, InputService
from berth.services.logs import LogBus
from berth.services.notify import Notifier
from berth.services.results import failure
from berth.store.ports import InputStore, TaskStore
from berth.store.records import TaskRecord
from berth.telemetry import Telemetry
from berth.workers.port import WORKER_LOST, NoCapacity, WorkerLost, WorkerPort

log = logging.getLogger("berth.tasks")

MAX_STARTUP_CRASHES = 3
EMULATED_GPU_ENV = "BERTH_EMULATED_GPU"  # in emulator mode, the GPU a container asked for and runs without
_ROOM_RECHECK_S = 0.5  # a sandbox waiting for room looks again at least this often


class Unplaceable(Exception):
    """No worker could run this container (more memory or CPUs than any has, or a GPU type none has): waiting
    for a slot won't help. `resource`: what is missing is a kind of hardware a worker that joins later may bring
    (a GPU type), not a size beyond the request's reach."""

    def __init__(self, reason: str, resource: bool = False) -> None:
        super().__init__(reason)
        self.resource = resource


def never_fits(workers: list[WorkerCapacity], memory_mb: int, cpu: float) -> str | None:
    """Why no worker, even empty, could take a container this big; None when one could (or none is known)."""
    if not workers:
        return None
    known = [w.memory_mb for w in workers if w.memory_mb]  # 0: a worker that could not read its memory
    if memory_mb and known and not any(m >= memory_mb for m in known):
        return f"a worker with {memory_mb} MiB of memory: the largest has {max(known)} MiB"
    if cpu and not any(w.cpu >= cpu for w in workers):
        return f"a worker with {cpu:g} CPUs: the largest has {max(w.cpu for w in workers):g}"
    return None


class TaskInputStore(TaskStore, InputStore, Protocol):
    """Task records, and the inputs a task held when it exited."""


@dataclass
class TaskInfo:
    task_id: str
    function_id: str
    app_id: str
    secret_hash: str
    slots: int
    created_at: float
    timeout_s: int = 300
    state: str = "starting"  # starting → running → draining → stopped
    inflight: int = 0
    last_active: float = 0.0
    first_input_at: float | None = None
    init_failure: api_pb2.GenericResult | None = None
    stop_reason: str | None = None
    pending_cancels: set[str] = field(default_factory=set)
    # Inputs Berth's container loop prefetched that wait, in this order, for the container to take them up.
    waiting: collections.deque[str] = field(default_factory=collections.deque)
    sandbox_id: str = ""  # set for a sandbox's task: it takes no inputs and the autoscaler leaves it alone
    cluster: ClusterSpec | None = None  # set for a member of a gang-scheduled cluster

    @property
    def follower(self) -> bool:
        """A cluster member past rank 0: it gets rank 0's inputs, holds no lease and is not scaled on its own."""
        return self.cluster is not None and self.cluster.rank > 0

    @property
    def accepting(self) -> bool:
        return self.state in ("starting", "running")


# (sandbox id, exit code, why the control plane stopped it or None) once a sandbox's container exited.
SandboxExit = Callable[[str, int, str | None], Awaitable[None]]


def _failure_result(task: TaskInfo, code: int) -> bytes | None:
    """What a failed container leaves in its task record (observability counts these as errored); None for
    one that exited cleanly or was stopped on purpose."""
    result = task.init_failure
    if result is None and code != 0 and task.stop_reason is None:
        result = failure(f"Container exited with code {code}")
    return None if result is None else bytes(result.SerializeToString())


def exit_reason(task: TaskInfo, code: int) -> str:
    """Why a container ended, as the dashboard shows it."""
    if task.init_failure is not None:
        return task.init_failure.exception.splitlines()[0] if task.init_failure.exception else "failed to start"
    if task.stop_reason is not None:
        return task.stop_reason
    return f"exited with code {code}"


def task_key(task_id: str) -> str:
    return f"task:{task_id}"


class TaskManager:
    def __init__(
        self,
        store: TaskInputStore,
        worker: WorkerPort,
        inputs: InputService,
        layouts: LayoutBuilder,
        logs: LogBus,
        notifier: Notifier,
        clock: Clock,
        server_url: str,
    ) -> None:
        self._store = store
        self._worker = worker
        self._inputs = inputs
        self._layouts = layouts
        self._logs = logs
        self._notifier = notifier
        self._clock = clock
        self._server_url = server_url
        self.tasks: dict[str, TaskInfo] = {}
        self.replica_id = ""  # the server replica these tasks belong to (scheduling/replicas.py)
        self._background: set[asyncio.Task[None]] = set()
        self._startup_crashes: dict[str, int] = {}  # function → containers in a row that died before running
        self.on_sandbox_exit: SandboxExit | None = None
        self.telemetry: Telemetry | None = None
        self.clusters = Clusters(notifier)
        self.emulate = False  # emulator mode (Settings.emulate): gpu= no worker has runs on CPU

    def gpu_requests(self, fn: api_pb2.Function) -> list[tuple[str, int]]:
        """What `fn` asks of a worker's GPUs: nothing in emulator mode when no worker has such a GPU."""
        requests = gpu.function_requests(fn)
        if requests and self.emulate and not self.has_gpu_for(requests):
            return []
        return requests

    async def warn_emulated(self, app_id: str, function_id: str, fn: api_pb2.Function, final: bool) -> None:
        """A catalog hook: the client that defines a function emulator mode runs without its GPU is told so."""
        requests = gpu.function_requests(fn)
        if final and requests and not self.gpu_requests(fn):
            asked = gpu.describe(requests)
            client_warnings.warn(
                f"Berth is in emulator mode: no worker has gpu={asked!r}, so {fn.function_name} runs on CPU "
                f"(its containers see {EMULATED_GPU_ENV}={asked})"
            )

    def has_gpu_for(self, requests: list[tuple[str, int]]) -> bool:
        blocker = self._worker.placement_blocker(requests, 0, 0.0)
        return blocker is None or "has such a GPU" not in blocker

    def of_function(self, function_id: str) -> list[TaskInfo]:
        return [t for t in self.tasks.values() if t.function_id == function_id]

    def of_app(self, app_id: str) -> list[TaskInfo]:
        return [t for t in self.tasks.values() if t.app_id == app_id]

    def placement_blocker(self, fn: api_pb2.Function) -> str | None:
        """Why no worker can take a container for `fn` now (its GPUs, its memory, no worker at all);
        None when one can."""
        return self._worker.placement_blocker(
            self.gpu_requests(fn), fn.resources.memory_mb, fn.resources.milli_cpu / 1000
        )

    def worker_room(self) -> int:
        return self._worker.free_slots()

    def tell_waiting(self, app_id: str, function_id: str, reason: str) -> None:
        self._logs.waiting(app_id, function_id, reason)

    def authenticate(self, task_id: str, secret: str) -> bool:
        task = self.tasks.get(task_id)
        return task is not None and secret_matches(task.secret_hash, secret)

    def cluster_blocker(self, fn: api_pb2.Function) -> str | None:
        """Why a whole cluster of `fn` cannot start now (on one worker or spread over several); None when it can.
        Unplaceable when the workers together could never hold it."""
        size, memory, cpu = cluster_size(fn), fn.resources.memory_mb, fn.resources.milli_cpu / 1000
        workers = self._worker.capacity()
        never = cluster_never_fits(workers, size, memory, cpu)
        if never is not None:
            raise Unplaceable(never)
        if not workers:
            return "Waiting for a worker: none is connected to this server"
        if cluster_room_now(workers, size, memory, cpu):
            return None
        return f"Waiting for room for all {size} containers of a cluster on the workers"

    async def launch_cluster(self, function_id: str, fn: api_pb2.Function) -> list[TaskInfo]:
        """Start the containers of one cluster of `fn`, all or none: room for every member is held on the workers
        before any starts (NoCapacity when there is none now), and one that cannot start stops the others."""
        size = cluster_size(fn)
        record = Cluster(new_id("cu"), function_id, "", size, self._clock.now())
        record.task_ids = [new_id("ta") for _ in range(size)]
        requests = self.gpu_requests(fn)
        self._worker.reserve_cluster(
            record.cluster_id, record.task_ids, requests, fn.resources.memory_mb, fn.resources.milli_cpu / 1000
        )
        self.clusters.add(record)
        try:
            results = await asyncio.gather(
                *(
                    self.launch(function_id, spec, task_id)
                    for spec, task_id in zip(record.specs(), record.task_ids, strict=True)
                ),
                return_exceptions=True,
            )
        finally:
            self._worker.release_cluster(record.cluster_id)
        started = [r for r in results if isinstance(r, TaskInfo)]
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            for task in started:
                self.kill(task, "another container of its cluster could not start")
            for task_id in record.task_ids:
                if task_id not in self.tasks:
                    self.clusters.member_left(task_id)
            raise failed[0]
        record.app_id = started[0].app_id
        return started

    async def launch(self, function_id: str, cluster: ClusterSpec | None = None, task_id: str = "") -> TaskInfo:
        built = await self._layouts.container_arguments(function_id)
        fn = built.arguments.function_def
        task_id = task_id or new_id("ta")
        secret = new_secret()
        built.arguments.task_id = task_id
        now = self._clock.now()
        task = TaskInfo(
            task_id,
            function_id,
            built.arguments.app_id,
            secret_digest(secret),
            max(1, fn.max_concurrent_inputs),
            now,
            last_active=now,
            cluster=cluster,
        )
        env = built.env
        requests = self.gpu_requests(fn)
        if not requests and gpu.function_requests(fn):  # emulator mode: it runs on CPU, and may ask what it wanted
            env = {**env, EMULATED_GPU_ENV: gpu.describe(gpu.function_requests(fn))}
        if cluster is not None:  # the in-container client reads it to tune NCCL; Berth is no cloud it knows
            env = {**env, "MODAL_CLOUD_PROVIDER": "CLOUD_PROVIDER_UNSPECIFIED"}
        spec = TaskSpec(
            task_id=task_id,
            function_id=function_id,
            app_id=task.app_id,
            container_arguments=built.arguments.SerializeToString(),
            server_url=self._server_url,
            secret=secret,
            env=env,
            files=built.files,
            binds=built.binds,
            memory_mb=fn.resources.memory_mb,
            cpu=fn.resources.milli_cpu / 1000,
            image_id=fn.image_id,
            gpu_requests=tuple(requests),
            cluster=cluster,
            source_ip=built.source_ip,
            buckets=built.buckets,
        )
        self.tasks[task_id] = task
        await self._store.put_task(
            TaskRecord(task_id, function_id, task.app_id, "starting", task.secret_hash, now, replica_id=self.replica_id)
        )
        self._logs.task_state(task.app_id, task_id, function_id, api_pb2.TASK_STATE_CREATED)
        try:
            await self._worker.start(spec)
        except NoCapacity:
            # Placement raced with another launch: nothing started, nothing failed; the autoscaler retries.
            self.tasks.pop(task_id, None)
            await self._store.end_task(task_id, "stopped", self._clock.now(), None, "no capacity to place it")
            raise
        except WorkerLost as exc:
            # The worker went away while the container was being started on it: not the function's fault. What
            # the container may already hold goes back to the queue, and the autoscaler places it elsewhere.
            log.warning("task %s was lost with its worker while starting: %s", task_id, exc)
            if self.tasks.get(task_id) is task:  # the hub may have reported it lost already
                await self._on_exit_task(task, WORKER_LOST)
            raise NoCapacity(f"its worker was lost while the container started ({exc})") from exc
        except Exception as exc:
            log.exception("could not start task %s", task_id)
            task.init_failure = failure(f"Could not start container: {exc}")
            await self._on_exit_task(task, -1)
            # A container that cannot start (e.g. a mount its runtime refuses) fails what waits for it
            # rather than being relaunched forever.
            await self._inputs.fail_queued(function_id, task.init_failure)
            raise
        if self.telemetry is not None:
            self.telemetry.container_started(function_id, fn.function_name)
        return task

    async def start_sandbox(self, spec: TaskSpec, wait_s: float = 0.0) -> TaskInfo:
        """Start a sandbox's container on a worker: a task like a function's (it takes a worker slot, its
        CPUs and memory), which runs its image's command and takes no inputs. A sandbox that finds no room
        waits up to `wait_s` for some, retiring idle function containers first (Modal queues a create
        rather than refusing it); NoCapacity when none came, Unplaceable at once when no worker could ever
        take it."""
        assert spec.sandbox is not None
        deadline = self._clock.monotonic() + wait_s
        while True:
            with self._notifier.listen(SCHEDULER_KEY) as waiter:  # a container exit notifies: listen first
                blocker = self._sandbox_blocker(spec)
                if blocker is None:
                    try:
                        return await self._start_sandbox_now(spec)
                    except NoCapacity as exc:  # placement raced with another start
                        blocker = str(exc)
                remaining = deadline - self._clock.monotonic()
                if remaining <= 0:
                    raise NoCapacity(blocker)
                await waiter.wait(min(remaining, _ROOM_RECHECK_S))

    def _sandbox_blocker(self, spec: TaskSpec) -> str | None:
        """Why the sandbox cannot start now (after asking idle containers to make room); Unplaceable when no
        worker could ever take it."""
        never = never_fits(self._worker.capacity(), spec.memory_mb, spec.cpu)
        if never is not None:
            raise Unplaceable(never)
        blocker = self._worker.placement_blocker(list(spec.gpu_requests), spec.memory_mb, spec.cpu)
        if blocker is not None and "has such a GPU" in blocker:
            raise Unplaceable(blocker.split("; the call stays queued")[0].removeprefix("Waiting for "), resource=True)
        if blocker is None and self._worker.free_slots() <= 0:
            blocker = "every worker slot is taken"
            self.evict_idle(1, "evicted to make room for a sandbox")
        return blocker

    def evict_idle(self, count: int, reason: str, keep_function: str = "") -> None:
        """Make room on full workers by retiring idle function containers, longest idle first. Containers
        already on their way out count as room to come, so a caller that asks again while they exit does
        not retire more."""
        leaving = [t for t in self.tasks.values() if t.state == "draining"]
        idle = [
            t
            for t in self.tasks.values()
            if t.function_id != keep_function and t.state == "running" and t.inflight == 0 and not t.sandbox_id
        ]
        for task in sorted(idle, key=lambda t: t.last_active)[: max(0, count - len(leaving))]:
            log.info("retiring idle container %s of %s: %s", task.task_id, task.function_id, reason)
            self.drain(task, reason)

    async def _start_sandbox_now(self, spec: TaskSpec) -> TaskInfo:
        assert spec.sandbox is not None
        now = self._clock.now()
        task = TaskInfo(spec.task_id, "", spec.app_id, secret_digest(spec.secret), 0, now, last_active=now)
        task.sandbox_id = spec.sandbox.sandbox_id
        self.tasks[spec.task_id] = task
        record = TaskRecord(
            spec.task_id, "", spec.app_id, "starting", task.secret_hash, now, replica_id=self.replica_id
        )
        await self._store.put_task(record)
        self._logs.task_state(spec.app_id, spec.task_id, "", api_pb2.TASK_STATE_CREATED)
        try:
            await self._worker.start(spec)
        except BaseException:
            self.tasks.pop(spec.task_id, None)
            await self._store.end_task(spec.task_id, "stopped", self._clock.now(), None, "could not start")
            raise
        self.mark_running(task)
        return task

    def mark_running(self, task: TaskInfo) -> None:
        self._startup_crashes.pop(task.function_id, None)
        if task.state == "starting":
            task.state = "running"
            self._logs.task_state(task.app_id, task.task_id, task.function_id, api_pb2.TASK_STATE_ACTIVE)

    def drain(self, task: TaskInfo, reason: str, busy_grace_s: float = 30.0) -> None:
        """Stop handing the task inputs; its next input poll answers with a kill switch. A busy task
        gets `busy_grace_s` to finish what it holds before it is stopped."""
        if not task.accepting:
            return
        task.state = "draining"
        task.stop_reason = reason
        self._notifier.notify(task_key(task.task_id))
        self._spawn(self._stop_later(task.task_id, 10.0 if task.inflight == 0 else busy_grace_s))
        for peer in self._peers(task):  # a cluster stops as one
            self.drain(peer, reason, busy_grace_s)

    def _peers(self, task: TaskInfo) -> list[TaskInfo]:
        cluster = self.clusters.of_task(task.task_id)
        if cluster is None:
            return []
        return [self.tasks[t] for t in cluster.task_ids if t != task.task_id and t in self.tasks]

    async def roll_over(self, app_id: str) -> None:
        """After a redeploy: retire the app's containers once their in-flight inputs finish, so new
        inputs start containers that run the new code."""
        for task in self.of_app(app_id):
            self.drain(task, "redeployed", busy_grace_s=float(task.timeout_s) + 10.0)

    def kill(self, task: TaskInfo, reason: str) -> None:
        task.state = "draining"
        task.stop_reason = reason
        self._worker.signal(task.task_id, signal.SIGKILL)

    async def stop_app_tasks(self, app_id: str, reason: str, grace_s: float = 3.0) -> None:
        """Idle containers get a kill switch and run their exit hooks; busy ones get SIGTERM.
        Returns once all have exited (SIGKILL after the grace period), so their last output is logged."""
        tasks = self.of_app(app_id)
        for task in tasks:
            busy = task.inflight > 0
            self.drain(task, reason)
            if task.sandbox_id:  # a sandbox has no exit hooks to run: it ends with its app
                self._worker.signal(task.task_id, signal.SIGKILL)
            elif busy:
                self._worker.signal(task.task_id, signal.SIGTERM)
        await asyncio.gather(*(self._worker.stop_after(t.task_id, grace_s) for t in tasks), return_exceptions=True)

    async def abandon_all(self, reason: str) -> None:
        """Stop every container at once: what they held was already handed to other replicas."""
        tasks = list(self.tasks.values())
        for task in tasks:
            task.state = "draining"
            task.stop_reason = reason
        await asyncio.gather(*(self._worker.stop(t.task_id, 2.0) for t in tasks), return_exceptions=True)

    async def open_elsewhere(self, function_id: str) -> int:
        """Containers of `function_id` that other server replicas run now."""
        return max(0, await self._store.open_tasks(function_id) - len(self.of_function(function_id)))

    async def _stop_later(self, task_id: str, grace_s: float) -> None:
        await asyncio.sleep(grace_s)
        await self._worker.stop(task_id, 5.0)

    def _spawn(self, coro: object) -> None:
        t = asyncio.ensure_future(coro)  # type: ignore[call-overload]
        self._background.add(t)
        t.add_done_callback(self._background.discard)

    async def on_exit(self, spec: TaskSpec, code: int) -> None:
        task = self.tasks.get(spec.task_id)
        if task is not None:
            await self._on_exit_task(task, code)

    async def _on_exit_task(self, task: TaskInfo, code: int) -> None:
        if task.sandbox_id:
            await self._on_sandbox_exit(task, code)
            return
        # Exited before it ever asked for an input, and nobody stopped it: it could not start.
        if code == WORKER_LOST and task.stop_reason is None:
            task.stop_reason = "its worker was lost"  # not the task's fault: what it held is requeued
        crashed_at_start = task.state == "starting" and task.stop_reason is None and task.init_failure is None
        if task.cluster is not None:
            await self._cluster_member_exit(task, code)
        task.state = "stopped"
        self.tasks.pop(task.task_id, None)
        held = await self._store.inputs_held_by(task.task_id)
        for state in held:
            if task.init_failure is not None:
                await self._inputs.finish(state.input_id, task.task_id, task.init_failure, api_pb2.DATA_FORMAT_PICKLE)
            elif task.stop_reason is not None or state.input_id in task.waiting:  # stopped, or never started
                await self._inputs.release(state)
            else:
                msg = f"Container {task.task_id} exited with code {code} while running this input"
                await self._inputs.finish(state.input_id, task.task_id, failure(msg), api_pb2.DATA_FORMAT_PICKLE)
        result = _failure_result(task, code)
        reason = exit_reason(task, code)
        log.info("container %s of function %s ended with code %s: %s", task.task_id, task.function_id, code, reason)
        await self._store.end_task(task.task_id, "stopped", self._clock.now(), result, reason)
        self._logs.task_state(task.app_id, task.task_id, task.function_id, api_pb2.TASK_STATE_COMPLETED)
        if crashed_at_start:
            await self._startup_crash(task, code)
        self._notifier.notify(SCHEDULER_KEY)

    async def _cluster_member_exit(self, task: TaskInfo, code: int) -> None:
        """A member that ends ends its cluster. One that failed fails the inputs the cluster runs (they
        could not finish without it); one stopped on purpose lets its peers stop the same way."""
        peers = self._peers(task)
        self.clusters.member_left(task.task_id)
        if task.stop_reason is None and task.init_failure is None and task.follower:
            rank0 = next((p for p in peers if p.cluster is not None and p.cluster.rank == 0), None)
            if rank0 is not None:
                assert task.cluster is not None
                msg = f"Container {task.task_id} (rank {task.cluster.rank} of its cluster) exited with code {code}"
                for state in await self._store.inputs_held_by(rank0.task_id):
                    await self._inputs.finish(state.input_id, rank0.task_id, failure(msg), api_pb2.DATA_FORMAT_PICKLE)
                rank0.inflight = 0
        for peer in peers:
            if peer.accepting:
                if task.stop_reason is None:
                    self.kill(peer, f"container {task.task_id} of its cluster exited")
                else:
                    self.drain(peer, task.stop_reason)

    async def _on_sandbox_exit(self, task: TaskInfo, code: int) -> None:
        task.state = "stopped"
        self.tasks.pop(task.task_id, None)
        await self._store.end_task(task.task_id, "stopped", self._clock.now(), None, exit_reason(task, code))
        self._logs.task_state(task.app_id, task.task_id, "", api_pb2.TASK_STATE_COMPLETED)
        if self.on_sandbox_exit is not None:
            await self.on_sandbox_exit(task.sandbox_id, code, task.stop_reason)
        self._notifier.notify(SCHEDULER_KEY)  # its slot is free

    async def _startup_crash(self, task: TaskInfo, code: int) -> None:
        """Containers that keep dying before they reach the server would be replaced forever while the
        caller waits: after MAX_STARTUP_CRASHES in a row, the function's queued inputs fail instead."""
        count = self._startup_crashes.get(task.function_id, 0) + 1
        self._startup_crashes[task.function_id] = count
        note = f"Container {task.task_id} exited with code {code} before it reached the server\n"
        self._logs.output(task.app_id, task.task_id, task.function_id, api_pb2.FILE_DESCRIPTOR_INFO, note)
        if count >= MAX_STARTUP_CRASHES:
            self._startup_crashes.pop(task.function_id, None)
            message = (
                f"{count} containers in a row exited before reaching the server (last exit code {code}); "
                "their output is in the app's logs (modal app logs)"
            )
            await self._inputs.fail_queued(task.function_id, failure(message))

    async def shutdown(self) -> None:
        for task in list(self.tasks.values()):
            task.stop_reason = "server shutdown"
        await self._worker.shutdown()
        for t in list(self._background):
            t.cancel()
