"""The in-container client's side: inputs out, outputs in, heartbeats with cancellations, task results.
Every call is made as one task, and may only touch what that task holds."""

from __future__ import annotations

import time

from modal_proto import api_pb2

from berth.clock import Clock
from berth.errors import PermissionDenied
from berth.scheduling.tasks import TaskInfo, TaskManager, task_key
from berth.services.catalog import Catalog
from berth.services.inputs import InputService, function_key
from berth.services.notify import Notifier
from berth.services.results import terminated
from berth.store.records import InputLease
from berth.telemetry import Telemetry

INPUT_POLL_S = 20.0
HEARTBEAT_HOLD_S = 10.0
MAX_PREFETCH = 64  # inputs Berth's container loop may take in one FunctionGetInputs (x-berth-prefetch)


class ContainerService:
    def __init__(
        self, tasks: TaskManager, inputs: InputService, catalog: Catalog, notifier: Notifier, clock: Clock
    ) -> None:
        self._tasks = tasks
        self._inputs = inputs
        self._catalog = catalog
        self._notifier = notifier
        self._clock = clock
        self.telemetry: Telemetry | None = None

    def task(self, task_id: str | None) -> TaskInfo:
        task = self._tasks.tasks.get(task_id or "")
        if task is None:
            raise PermissionDenied("This call must come from a running Berth container")
        return task

    async def get_inputs(
        self, task_id: str | None, req: api_pb2.FunctionGetInputsRequest, prefetch: int = 0
    ) -> api_pb2.FunctionGetInputsResponse:
        """Up to one input per free slot (or one @batched batch), held open while none is queued. Berth's container
        loop may ask for more (`prefetch`): it keeps them and takes them up one by one as its slots free, so only
        as many as it has free slots start now; the rest wait, with no deadline, until an output frees a slot."""
        task = self.task(task_id)
        if req.function_id and req.function_id != task.function_id:
            raise PermissionDenied(f"Task {task.task_id} does not run function {req.function_id}")
        self._tasks.mark_running(task)
        if task.follower:  # a cluster's other ranks run what its rank 0 took (scheduling/clusters.py)
            return await self._tasks.clusters.follower_inputs(task.task_id, task.accepting)
        limit = max(1, req.batch_max_size)
        if req.batch_max_size <= 1 and prefetch > 1 and task.cluster is None:  # a cluster's ranks go in step
            limit = min(prefetch, MAX_PREFETCH)
        deadline = time.monotonic() + INPUT_POLL_S
        leases: list[InputLease] = []
        while task.accepting:
            with self._notifier.listen(function_key(task.function_id), task_key(task.task_id)) as waiter:
                leases = await self._inputs.claim(task.function_id, task.task_id, limit)
                remaining = deadline - time.monotonic()
                if leases or remaining <= 0:
                    break
                await waiter.wait(min(remaining, 1.0))
        if leases and req.batch_max_size > 1 and len(leases) < limit and req.batch_linger_ms:
            leases += await self._linger(task, limit - len(leases), req.batch_linger_ms / 1000)
        if not task.accepting and not leases:
            return api_pb2.FunctionGetInputsResponse(inputs=[api_pb2.FunctionGetInputsItem(kill_switch=True)])
        free = max(1, task.slots - task.inflight)
        if len(leases) > free:
            waiting = [lease.input_id for lease in leases[free:]]
            await self._inputs.defer(task.task_id, waiting)
            task.waiting.extend(waiting)
        now = self._clock.now()
        task.inflight += len(leases)
        task.last_active = now
        if leases and task.first_input_at is None:
            task.first_input_at = now
            if self.telemetry is not None:
                fn = await self._catalog.definition(task.function_id)
                self.telemetry.first_input(task.function_id, fn.function_name, now - task.created_at)
        items = [self._item(lease) for lease in leases]
        self._tasks.clusters.taken(task.task_id, items)
        return api_pb2.FunctionGetInputsResponse(inputs=items)

    async def _linger(self, task: TaskInfo, want: int, linger_s: float) -> list[InputLease]:
        deadline = time.monotonic() + linger_s
        got: list[InputLease] = []
        while len(got) < want and (remaining := deadline - time.monotonic()) > 0:
            with self._notifier.listen(function_key(task.function_id)) as waiter:
                await waiter.wait(remaining)
            got += await self._inputs.claim(task.function_id, task.task_id, want - len(got))
        return got

    @staticmethod
    def _item(lease: InputLease) -> api_pb2.FunctionGetInputsItem:
        return api_pb2.FunctionGetInputsItem(
            input_id=lease.input_id,
            input=api_pb2.FunctionInput.FromString(lease.payload),
            function_call_id=lease.call_id,
            function_call_invocation_type=lease.invocation_type,  # type: ignore[arg-type]
            retry_count=lease.attempt,
            function_map_idx=lease.idx,
        )

    async def put_outputs(self, task_id: str | None, req: api_pb2.FunctionPutOutputsRequest) -> None:
        task = self.task(task_id)
        if task.follower:  # a cluster's other ranks hold no lease: the caller gets rank 0's output
            task.last_active = self._clock.now()
            return
        for item in req.outputs:
            holder = await self._inputs.holder_of(item.input_id)
            if holder is not None and holder != task.task_id:
                raise PermissionDenied(f"Input {item.input_id} is not held by task {task.task_id}")
        outputs = [(item.input_id, item.result, int(item.data_format)) for item in req.outputs]
        taken = await self._inputs.finish_held(task.function_id, task.task_id, outputs)
        taken_up: list[str] = []
        for (input_id, _, _), accepted in zip(outputs, taken, strict=True):
            if not accepted:
                continue
            task.inflight = max(0, task.inflight - 1)
            task.pending_cancels.discard(input_id)
            if input_id in task.waiting:  # cancelled before it started: no slot was freed
                task.waiting.remove(input_id)
            elif task.waiting:  # a slot freed: the container takes up the next prefetched input now
                taken_up.append(task.waiting.popleft())
        if taken_up:
            await self._inputs.take_up(task.function_id, task.task_id, taken_up)
        task.last_active = self._clock.now()

    async def heartbeat(self, task_id: str | None) -> api_pb2.ContainerHeartbeatResponse:
        """Held open for a while so a cancellation reaches the container within about a second, whichever
        replica it was asked of."""
        task = self.task(task_id)
        deadline = time.monotonic() + HEARTBEAT_HOLD_S
        check_store = True
        while not task.pending_cancels and task.accepting and (remaining := deadline - time.monotonic()) > 0:
            with self._notifier.listen(task_key(task.task_id)) as waiter:
                if check_store:
                    await self._take_cancels(task)
                    if task.pending_cancels or not task.accepting:
                        break
                check_store = await waiter.wait(min(remaining, 1.0))
        resp = api_pb2.ContainerHeartbeatResponse()
        if task.pending_cancels:
            resp.cancel_input_event.input_ids.extend(sorted(task.pending_cancels))
            task.pending_cancels.clear()
        return resp

    async def _take_cancels(self, task: TaskInfo) -> None:
        """Cancellations other replicas recorded for the inputs this task holds."""
        for input_id, terminate in await self._inputs.take_cancels(task.task_id):
            if terminate:
                await self._terminate(task, input_id)
            else:
                task.pending_cancels.add(input_id)

    async def cancel_inputs(self, running: list[tuple[str, str]], terminate: bool) -> None:
        for input_id, holder in running:
            task = self._tasks.tasks.get(holder)
            if task is None:
                # Held by a container of another replica: it takes the request at its next heartbeat.
                if await self._inputs.request_cancel(input_id, holder, terminate):
                    self._notifier.notify(task_key(holder))
            elif terminate:
                await self._terminate(task, input_id)
            else:
                task.pending_cancels.add(input_id)
                self._notifier.notify(task_key(task.task_id))

    async def _terminate(self, task: TaskInfo, input_id: str) -> None:
        """Cancel an input by stopping its container: the input is finished as terminated first, or the stopped
        container's inputs would go back to the queue (as a stopped container's do) and it would run again. An
        input that only waits in the container (prefetched) is dropped there instead: the container may be
        running another call's input."""
        if await self._inputs.finish(input_id, task.task_id, terminated(), api_pb2.DATA_FORMAT_PICKLE):
            task.inflight = max(0, task.inflight - 1)
        if input_id in task.waiting:
            task.waiting.remove(input_id)
            task.pending_cancels.add(input_id)
            self._notifier.notify(task_key(task.task_id))
            return
        self._tasks.kill(task, "cancelled")

    async def task_result(self, task_id: str | None, req: api_pb2.TaskResultRequest) -> None:
        task = self.task(task_id)
        if req.result.status != api_pb2.GenericResult.GENERIC_STATUS_SUCCESS:
            task.init_failure = req.result
            # The function cannot start: fail what waits for it rather than crash-loop.
            await self._inputs.fail_queued(task.function_id, req.result)

    async def dynamic_concurrency(self, task_id: str | None) -> int:
        task = self.task(task_id)
        return task.slots
