"""The control loop: start containers for queued inputs, retire idle ones, enforce timeouts and
stop ephemeral apps whose client went away."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Protocol

from modal_proto import api_pb2

from berth.clock import Clock
from berth.scheduling.tasks import TaskInfo, TaskManager
from berth.services.apps import AppService
from berth.services.catalog import Catalog
from berth.services.inputs import SCHEDULER_KEY, InputService
from berth.services.notify import Notifier
from berth.services.results import terminated, timed_out
from berth.store.ports import AppStore, CallStore, InputStore
from berth.workers.port import NoCapacity

log = logging.getLogger("berth.autoscaler")

TICK_S = 0.5
# Wake-ups arrive with every enqueued batch; ticking at most this often keeps a big map cheap.
MIN_TICK_INTERVAL_S = 0.05
PRUNE_INTERVAL_S = 60.0


def max_containers(fn: api_pb2.Function, default: int) -> int:
    return fn.autoscaler_settings.max_containers or fn.concurrency_limit or default


def scaledown_window(fn: api_pb2.Function, default: int) -> float:
    return float(fn.autoscaler_settings.scaledown_window or fn.task_idle_timeout_secs or default)


def containers_needed(queued: int, tasks: list[TaskInfo], per_task: int) -> int:
    """Containers to add so every queued input has a slot, counting free slots of live ones."""
    free = sum(max(0, t.slots - t.inflight) for t in tasks if t.accepting)
    return max(0, math.ceil((queued - free) / per_task))


class Peers(Protocol):
    def others_alive(self) -> bool: ...
    def others_can_place(self) -> bool: ...


class _Alone:
    def others_alive(self) -> bool:
        return False

    def others_can_place(self) -> bool:
        return False


_ALONE = _Alone()


class ReaperStore(InputStore, CallStore, AppStore, Protocol):
    """Queue depths and expired leases to act on, apps to check, old calls to prune."""


class Autoscaler:
    def __init__(
        self,
        store: ReaperStore,
        tasks: TaskManager,
        catalog: Catalog,
        apps: AppService,
        inputs: InputService,
        notifier: Notifier,
        clock: Clock,
        default_max_containers: int,
        default_scaledown_s: int,
        retention_s: float,
    ) -> None:
        self._store = store
        self._tasks = tasks
        self._catalog = catalog
        self._apps = apps
        self._inputs = inputs
        self._notifier = notifier
        self._clock = clock
        self._default_max = default_max_containers
        self._default_scaledown = default_scaledown_s
        self._retention_s = retention_s
        self._last_prune = 0.0
        self._waiting: dict[str, str] = {}  # function → why its queued inputs wait (last said)
        # The other server replicas on this database (scheduling/replicas.py); none for a single server, which
        # then spends no query on them in its ticks.
        self.peers: Peers = _ALONE
        # Why a container of (app, function) must wait for a quota (services/quotas.py); None: it need not.
        self.quota_blocker: Callable[[str, str], Awaitable[str | None]] | None = None

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("autoscaler tick failed")
            with self._notifier.listen(SCHEDULER_KEY) as waiter:
                await waiter.wait(TICK_S)
            await asyncio.sleep(MIN_TICK_INTERVAL_S)

    async def tick(self) -> None:
        await self._scale_up()
        await self._stop_tasks_of_stopped_apps()
        await self._retire_idle()
        await self._enforce_timeouts()
        await self._stop_silent_apps()
        await self._prune()

    async def _scale_up(self) -> None:
        for function_id, queued in (await self._store.queued_counts(self._clock.now())).items():
            fn = await self._catalog.definition(function_id)
            rec = await self._catalog.record(function_id)
            if not await self._apps.is_running(rec.app_id):
                await self._terminate_queued(function_id)
                continue
            live = [t for t in self._tasks.of_function(function_id) if t.accepting]
            per_task = max(1, fn.max_concurrent_inputs) * max(1, fn.batch_max_size)
            want = containers_needed(queued, live, per_task)
            fn_room = max_containers(fn, self._default_max) - len(live)
            if self.peers.others_alive():
                fn_room -= await self._tasks.open_elsewhere(function_id)
            if min(want, fn_room) <= 0 or await self._blocked(function_id, rec.app_id, fn, live):
                continue
            worker_room = self._tasks.worker_room()
            if min(want, fn_room) > worker_room:
                self._evict_idle(function_id, min(want, fn_room) - worker_room)
            for i in range(max(0, min(want, fn_room, worker_room))):
                if i > 0 and await self._blocked(function_id, rec.app_id, fn, live):
                    break
                try:
                    await self._tasks.launch(function_id)
                except NoCapacity:
                    break
                except Exception:
                    log.exception("launching a container for %s failed", function_id)
                    break

    async def _blocked(self, function_id: str, app_id: str, fn: api_pb2.Function, live: list[TaskInfo]) -> bool:
        """Placement (below), or a container or GPU quota of its environment or the workspace that is taken."""
        if self.quota_blocker is not None:
            reason = await self.quota_blocker(app_id, function_id)
            if reason is not None:
                return self._placement_blocked(function_id, app_id, fn, live, reason)
        return self._placement_blocked(function_id, app_id, fn, live)

    def _placement_blocked(
        self, function_id: str, app_id: str, fn: api_pb2.Function, live: list[TaskInfo], quota: str | None = None
    ) -> bool:
        """A function no worker can take now (its GPUs aren't free, no worker has room, or none is
        connected) keeps its inputs queued; while it has no container at all, its caller is told why
        (once per reason)."""
        reason = quota or self._tasks.placement_blocker(fn)
        if reason is None:
            self._waiting.pop(function_id, None)
            return False
        # Another replica has room: a function this one cannot place is not stuck, and its caller is not told so.
        if self.peers.others_can_place():
            return True
        if not live and self._waiting.get(function_id) != reason:
            self._waiting[function_id] = reason
            log.info("function %s: %s", function_id, reason)
            self._tasks.tell_waiting(app_id, function_id, reason)
        return True

    def _evict_idle(self, for_function: str, count: int) -> None:
        """Make room on a full worker by retiring idle containers of other functions, longest idle first."""
        idle = [
            t
            for t in self._tasks.tasks.values()
            if t.function_id != for_function and t.state == "running" and t.inflight == 0 and not t.sandbox_id
        ]
        for task in sorted(idle, key=lambda t: t.last_active)[:count]:
            self._tasks.drain(task, "evicted to make room for queued inputs")

    async def _stop_tasks_of_stopped_apps(self) -> None:
        """An app stopped through another replica: this one stops the app's containers it runs."""
        if not self.peers.others_alive():
            return  # every stop went through this replica, whose stop hook stopped them
        for app_id in {t.app_id for t in self._tasks.tasks.values() if t.accepting}:
            if not await self._apps.is_running(app_id):
                await self._tasks.stop_app_tasks(app_id, "app stopped")

    async def _terminate_queued(self, function_id: str) -> None:
        await self._inputs.fail_queued(function_id, terminated("The app was stopped before this input ran"))

    async def _retire_idle(self) -> None:
        now = self._clock.now()
        for task in list(self._tasks.tasks.values()):
            if task.state != "running" or task.inflight or task.sandbox_id:
                continue
            fn = await self._catalog.definition(task.function_id)
            if now - task.last_active > scaledown_window(fn, self._default_scaledown):
                self._tasks.drain(task, "scaled down after idle window")

    async def _enforce_timeouts(self) -> None:
        for state in await self._store.expired_leases(self._clock.now()):
            fn = await self._catalog.definition(state.function_id)
            task = self._tasks.tasks.get(state.holder or "")
            await self._inputs.finish(
                state.input_id, state.holder, timed_out(fn.timeout_secs), api_pb2.DATA_FORMAT_PICKLE
            )
            if task is not None:
                task.inflight = max(0, task.inflight - 1)
                self._tasks.kill(task, f"input {state.input_id} timed out")

    async def _stop_silent_apps(self) -> None:
        for app_id in await self._apps.silent_apps():
            app = await self._store.get_app(app_id)
            if app is not None and app.state == api_pb2.APP_STATE_EPHEMERAL:
                log.info("stopping app %s: no heartbeat from its client", app_id)
                await self._apps.stop(app_id)
            elif app is not None and app.state == api_pb2.APP_STATE_INITIALIZING:
                log.info("discarding app %s: its deploy was abandoned", app_id)
                await self._apps.discard(app_id)

    async def _prune(self) -> None:
        now = self._clock.monotonic()
        if now - self._last_prune < PRUNE_INTERVAL_S:
            return
        self._last_prune = now
        pruned = await self._store.prune(self._clock.now() - self._retention_s)
        if pruned:
            log.info("pruned %d finished calls older than the retention period", pruned)
