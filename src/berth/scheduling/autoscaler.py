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
from berth.errors import NotFound
from berth.scheduling.clusters import cluster_size
from berth.scheduling.overrides import AutoscalerOverrides, static_settings, warm_target
from berth.scheduling.tasks import TaskInfo, TaskManager, Unplaceable
from berth.services.apps import AppService
from berth.services.catalog import Catalog
from berth.services.inputs import SCHEDULER_KEY, InputService
from berth.services.notify import Notifier
from berth.services.results import failure, terminated, timed_out
from berth.store.ports import AppStore, CallStore, InputStore
from berth.workers.port import NoCapacity

log = logging.getLogger("berth.autoscaler")

TICK_S = 0.5
# Wake-ups arrive with every enqueued batch; ticking at most this often keeps a big map cheap.
MIN_TICK_INTERVAL_S = 0.05
PRUNE_INTERVAL_S = 60.0
# How often the functions that may want warm containers are listed again from the store (after a restart,
# and to see deploys and overrides made through another replica); this server's own are noted at once.
WARM_REFRESH_S = 30.0


def max_containers(settings: api_pb2.AutoscalerSettings, default: int) -> int:
    return settings.max_containers or default


def scaledown_window(settings: api_pb2.AutoscalerSettings, default: int) -> float:
    return float(settings.scaledown_window or default)


async def _no_candidates() -> list[str]:
    return []


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
        overrides: AutoscalerOverrides,
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
        self.overrides = overrides
        # Functions that may want warm containers (min_containers, buffer_containers), and where to list them.
        self._warm: set[str] = set()
        self._warm_listed_at = -math.inf
        self.warm_candidates: Callable[[], Awaitable[list[str]]] = _no_candidates
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
        await self._keep_warm()
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
            live = [t for t in self._tasks.of_function(function_id) if t.accepting and not t.follower]
            per_task = max(1, fn.max_concurrent_inputs) * max(1, fn.batch_max_size)
            want = containers_needed(queued, live, per_task)
            settings = await self.overrides.effective(function_id, fn)
            fn_room = max_containers(settings, self._default_max) - len(live)
            if self.peers.others_alive():
                fn_room -= await self._tasks.open_elsewhere(function_id)
            if cluster_size(fn):
                await self._scale_up_clusters(function_id, rec.app_id, fn, want, live)
                continue
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

    async def _scale_up_clusters(
        self, function_id: str, app_id: str, fn: api_pb2.Function, want: int, live: list[TaskInfo]
    ) -> None:
        """Whole clusters (`want` counts them: `live` holds their rank 0s), each placed all at once (on one worker,
        or spread over several). A cluster the workers could never hold fails what waits for it instead of
        queueing it forever."""
        size = cluster_size(fn)
        settings = await self.overrides.effective(function_id, fn)
        want = min(want, max(1, max_containers(settings, self._default_max) // size) - len(live))
        for _ in range(max(0, want)):
            if await self._blocked(function_id, app_id, fn, live):
                return
            try:
                reason = self._tasks.cluster_blocker(fn)
            except Unplaceable as exc:
                await self._inputs.fail_queued(function_id, failure(str(exc)))
                return
            if reason is not None:
                self._evict_idle(function_id, size)
                self._placement_blocked(function_id, app_id, fn, live, reason)
                return
            try:
                await self._tasks.launch_cluster(function_id, fn)
            except NoCapacity as exc:  # the workers' room went meanwhile, or cannot be joined into one cluster
                self._placement_blocked(function_id, app_id, fn, live, str(exc))
                return
            except Exception:
                log.exception("launching a cluster for %s failed", function_id)
                return

    async def _blocked(self, function_id: str, app_id: str, fn: api_pb2.Function, live: list[TaskInfo]) -> bool:
        """Placement (below), or a container or GPU quota of its environment or the workspace that is taken."""
        if self.quota_blocker is not None:
            reason = await self.quota_blocker(app_id, function_id)
            if reason is not None:
                return self._placement_blocked(function_id, app_id, fn, live, reason)
        return self._placement_blocked(function_id, app_id, fn, live)

    def note_warm(self, function_id: str) -> None:
        """A function whose settings changed here: checked from the next tick on."""
        self._warm.add(function_id)
        self._notifier.notify(SCHEDULER_KEY)

    async def on_definition(self, app_id: str, function_id: str, fn: api_pb2.Function, final: bool) -> None:
        """A catalog hook: a (re)deployed function starts from its decorator's settings."""
        if not final:
            return
        await self.overrides.reset(function_id)
        static = static_settings(fn)
        if static.min_containers or static.buffer_containers:
            self.note_warm(function_id)

    async def _list_warm(self) -> None:
        now = self._clock.monotonic()
        if now - self._warm_listed_at < WARM_REFRESH_S:
            return
        self._warm_listed_at = now
        await self.overrides.load()
        self._warm.update(self.overrides.function_ids())
        self._warm.update(await self.warm_candidates())

    async def _keep_warm(self) -> None:
        """Start the containers min_containers and buffer_containers ask for, beyond those queued inputs need."""
        await self._list_warm()
        for function_id in list(self._warm):
            try:
                fn = await self._catalog.definition(function_id)
                rec = await self._catalog.record(function_id)
            except NotFound:
                continue  # defined but not yet stored: the next tick sees it
            settings = await self.overrides.effective(function_id, fn)
            if not settings.min_containers and not settings.buffer_containers:
                continue
            app = await self._store.get_app(rec.app_id)
            if app is None or app.state == api_pb2.APP_STATE_STOPPED:
                self._warm.discard(function_id)
                continue
            if not await self._apps.is_running(rec.app_id):
                continue
            live = [t for t in self._tasks.of_function(function_id) if t.accepting and not t.follower]
            have = len(live) + (await self._tasks.open_elsewhere(function_id) if self.peers.others_alive() else 0)
            target = warm_target(settings, sum(1 for t in live if t.inflight))
            # min_containers counts containers, a multiple of a cluster's size; `live` counts clusters (rank 0s)
            size = cluster_size(fn) or 1
            missing = math.ceil(target / size) - have
            if missing <= 0 or await self._blocked(function_id, rec.app_id, fn, live):
                continue
            if size > 1:
                await self._scale_up_clusters(function_id, rec.app_id, fn, missing, live)
                continue
            for _ in range(min(missing, self._tasks.worker_room())):
                try:
                    await self._tasks.launch(function_id)
                except NoCapacity:
                    break
                except Exception:
                    log.exception("launching a warm container for %s failed", function_id)
                    break

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
        """Retire containers idle past their scaledown window, longest idle first, but never below what
        min_containers and buffer_containers keep."""
        now = self._clock.now()
        spare: dict[str, int] = {}  # function → idle containers it may still lose
        idle = [
            t
            for t in self._tasks.tasks.values()
            if t.state == "running" and not t.inflight and not t.sandbox_id and not t.follower
        ]
        for task in sorted(idle, key=lambda t: t.last_active):
            fn = await self._catalog.definition(task.function_id)
            settings = await self.overrides.effective(task.function_id, fn)
            if now - task.last_active <= scaledown_window(settings, self._default_scaledown):
                continue
            if task.function_id not in spare:
                live = [t for t in self._tasks.of_function(task.function_id) if t.accepting and not t.follower]
                spare[task.function_id] = len(live) - warm_target(settings, sum(1 for t in live if t.inflight))
            if spare[task.function_id] <= 0:
                continue
            spare[task.function_id] -= 1
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
