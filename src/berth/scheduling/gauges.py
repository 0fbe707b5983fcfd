"""The gauges of the present state, set just before each scrape of /metrics: inputs waiting per function,
containers by state, and each worker's capacity (the in-process worker's, or every remote worker's)."""

from __future__ import annotations

from berth.clock import Clock
from berth.errors import NotFound
from berth.scheduling.tasks import TaskManager
from berth.services.catalog import Catalog
from berth.store.ports import InputStore
from berth.telemetry import Telemetry
from berth.workers.port import WorkerPort

_STATES = ("starting", "running", "draining")


class Gauges:
    def __init__(
        self,
        telemetry: Telemetry,
        tasks: TaskManager,
        store: InputStore,
        catalog: Catalog,
        worker: WorkerPort,
        clock: Clock,
    ) -> None:
        self._t = telemetry
        self._tasks = tasks
        self._store = store
        self._catalog = catalog
        self._worker = worker
        self._clock = clock

    async def refresh(self) -> None:
        await self._queue_depth()
        states = [t.state for t in self._tasks.tasks.values()]
        for state in _STATES:
            self._t.containers.labels(state).set(states.count(state))
        self._worker_capacity()

    async def _queue_depth(self) -> None:
        # A function whose queue emptied reads 0 rather than keeping its last value.
        self._t.queue_depth.clear()
        for function_id, depth in (await self._store.queued_counts(self._clock.now())).items():
            try:
                name = (await self._catalog.definition(function_id)).function_name
            except NotFound:
                name = ""
            self._t.queue_depth.labels(function_id, name).set(depth)

    def _worker_capacity(self) -> None:
        for gauge in (self._t.worker_slots, self._t.worker_cpu, self._t.worker_memory):
            gauge.clear()  # a worker that left is no longer reported
        for w in self._worker.capacity():
            self._t.worker_slots.labels(w.worker_id, "total").set(w.slots)
            self._t.worker_slots.labels(w.worker_id, "used").set(w.slots_used)
            self._t.worker_cpu.labels(w.worker_id, "total").set(w.cpu)
            self._t.worker_cpu.labels(w.worker_id, "used").set(w.cpu_used)
            self._t.worker_memory.labels(w.worker_id, "total").set(w.memory_mb * 2**20)
            self._t.worker_memory.labels(w.worker_id, "used").set(w.memory_used_mb * 2**20)
