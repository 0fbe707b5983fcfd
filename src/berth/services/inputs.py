"""Input lifecycle: queue, lease, finish, retry or fail. Every transition is persisted first and
then announced through the notifier, so a woken waiter always finds the new state."""

from __future__ import annotations

import logging

from modal_proto import api_pb2

from berth.clock import Clock
from berth.services.catalog import Catalog
from berth.services.notify import Notifier
from berth.services.results import RETRYABLE, retry_delay_s
from berth.store.ports import InputStore
from berth.store.records import InputLease, InputState
from berth.telemetry import Telemetry

log = logging.getLogger("berth.inputs")


def function_key(function_id: str) -> str:
    return f"fn:{function_id}"


def call_key(call_id: str) -> str:
    return f"call:{call_id}"


SCHEDULER_KEY = "scheduler"


class InputService:
    def __init__(self, store: InputStore, catalog: Catalog, notifier: Notifier, clock: Clock) -> None:
        self._store = store
        self._catalog = catalog
        self._notifier = notifier
        self._clock = clock
        self.telemetry: Telemetry | None = None

    async def enqueue(self, call_id: str, function_id: str, items: list[tuple[str, int, str, bytes]]) -> None:
        await self._store.add_inputs(call_id, function_id, items, self._clock.now())
        self._notifier.notify(function_key(function_id))
        self._notifier.notify(SCHEDULER_KEY)

    async def claim(self, function_id: str, task_id: str, limit: int) -> list[InputLease]:
        fn = await self._catalog.definition(function_id)
        return await self._store.claim_inputs(
            function_id, task_id, limit, self._clock.now(), float(fn.timeout_secs or 0) or None
        )

    async def defer(self, holder: str, input_ids: list[str]) -> None:
        """These leased inputs wait, prefetched, in the container: not started, nothing times them out yet."""
        await self._store.restart_leases(holder, input_ids, self._clock.now(), None)

    async def take_up(self, function_id: str, holder: str, input_ids: list[str]) -> None:
        """The container started these prefetched inputs now: their timeouts run from here."""
        fn = await self._catalog.definition(function_id)
        now = self._clock.now()
        await self._store.restart_leases(holder, input_ids, now, now + fn.timeout_secs if fn.timeout_secs else None)

    async def finish(self, input_id: str, holder: str | None, result: api_pb2.GenericResult, data_format: int) -> bool:
        """Record an attempt's result. Failures with retries left go back to the queue instead.
        Returns False when the holder no longer holds the input (a stale or foreign attempt)."""
        state = await self._store.get_input(input_id)
        if state is None or state.state == "done" or (holder is not None and state.holder != holder):
            return False
        if result.status in RETRYABLE and await self._retry(state):
            return True
        if result.status == api_pb2.GenericResult.GENERIC_STATUS_TERMINATED and not result.exception:
            result.exception = "The input was cancelled before it finished"
        out = await self._store.finish_input(
            input_id, holder, result.SerializeToString(), data_format, self._clock.now(), result.status
        )
        if out is not None:
            self._notifier.notify(call_key(out.call_id))
            await self._observe(state, result.status)
        return out is not None

    async def _observe(self, state: InputState, status: int) -> None:
        if self.telemetry is None:
            return
        fn = await self._catalog.definition(state.function_id)
        label = api_pb2.GenericResult.GenericStatus.Name(status).removeprefix("GENERIC_STATUS_").lower()
        self.telemetry.input_finished(state.function_id, fn.function_name, label, self._clock.now() - state.created_at)

    async def _retry(self, state: InputState) -> bool:
        fn = await self._catalog.definition(state.function_id)
        if state.attempt >= fn.retry_policy.retries:
            return False
        attempt = state.attempt + 1
        delay = retry_delay_s(fn.retry_policy, attempt)
        log.info("retrying input %s (attempt %d) in %.1fs", state.input_id, attempt, delay)
        # Only while the attempt that failed still holds it: an input another writer finished or
        # requeued meanwhile is left as that writer put it (and counts as handled here).
        holder = state.holder if state.state == "leased" else None
        if await self._store.requeue_input(state.input_id, attempt, self._clock.now() + delay, holder):
            self._notifier.notify(SCHEDULER_KEY)
        return True

    async def holder_of(self, input_id: str) -> str | None:
        """The task that holds an input's lease now, if any."""
        state = await self._store.get_input(input_id)
        return state.holder if state is not None and state.state == "leased" else None

    async def request_cancel(self, input_id: str, holder: str, terminate: bool) -> bool:
        return await self._store.request_cancel(input_id, holder, terminate)

    async def take_cancels(self, task_id: str) -> list[tuple[str, bool]]:
        return await self._store.take_cancels(task_id)

    async def fail_queued(self, function_id: str, result: api_pb2.GenericResult) -> None:
        for state in await self._store.queued_inputs_of_function(function_id):
            await self.finish(state.input_id, None, result, api_pb2.DATA_FORMAT_PICKLE)

    async def release(self, state: InputState) -> None:
        """Put a leased input back without counting an attempt (its container was stopped by us)."""
        if not await self._store.requeue_input(state.input_id, state.attempt, 0, state.holder):
            return  # finished or moved on since it was read
        self._notifier.notify(function_key(state.function_id))
        self._notifier.notify(SCHEDULER_KEY)
