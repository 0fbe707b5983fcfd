"""Berth's container loop: what a function container runs instead of `python -m modal._container_entrypoint`.

It is modal's own entrypoint, run unchanged, with three methods of its input/output manager replaced so that
short inputs cost fewer round trips to the server:

- **Prefetch.** When a container's inputs turn out short, one FunctionGetInputs asks (with the
  `x-berth-prefetch` header) for as many queued inputs as fill about PREFETCH_BUDGET_S of work. They wait
  here, in order, and each is handed to modal's loop only when an input slot is free, exactly as if it had
  just been fetched. The server starts an input's timeout when the container takes it up (it learns that from
  the previous output), not when it was fetched.
- **Merged outputs.** While prefetched inputs wait, an output is queued and the next input starts at once; a
  sender sends what is queued in one FunctionPutOutputs, and whatever comes in while it is in flight goes in
  the next one. With nothing prefetched, an output is sent before the container asks for more, so no output
  ever waits on an empty queue.
- **Cancellation.** A cancellation for an input that waits here drops it and reports it terminated, as modal
  reports a cancelled running input; it never runs.

Everything else (enter/exit hooks, generators, web endpoints, @concurrent, @batched, per-input context) is
modal's code. @batched functions and single-use containers keep modal's own loop, and so does any modal
version but the one this was written against. BERTH_CONTAINER_LOOP=stock on the worker turns it off.

**Standby** (`--standby`, a pooled function container, berth.worker.sandbox_pool): the loop imports modal and
its container entrypoint first, says STANDBY_READY on stdout and waits for its task on stdin: one JSON line
with the task's whole environment and working directory, sent by the worker at hand-over. It makes that
environment its own (nothing of the standby's is left), reads stdin from /dev/null from then on, and runs
modal's entrypoint as a fresh container would, only without the imports' time. `--standby-snapshot` (a function
with enable_memory_snapshot=True, berth.worker.standby) runs modal's entrypoint at once instead, through its
snap=True hooks and checkpoint, and reads the task from stdin when modal's restore begins.

This file runs inside containers with only modal importable: it must not import berth.
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":
    # As `python -m` has it: the working directory first, not this file's directory, before anything else is
    # imported (run from a host path, this file's neighbours would shadow modules of the standard library).
    sys.path[0] = os.getcwd()

import asyncio  # noqa: E402
import collections  # noqa: E402
import functools  # noqa: E402
import time  # noqa: E402
from collections.abc import AsyncIterator
from typing import Any

MODAL_VERSION = "1.6.4"
PREFETCH_HEADER = "x-berth-prefetch"
PREFETCH_BUDGET_S = 0.05  # prefetch at most about this much work per container (so others get their share)
MAX_PREFETCH = 64
# The least it prefetches, whatever its inputs take (a function's environment may set it, as the tests do to make
# inputs wait in the container on purpose).
PREFETCH_MIN_ENV = "BERTH_PREFETCH_MIN"
MAX_OUTPUTS_PER_RPC = 20  # as modal's own _send_outputs
MAX_OUTPUT_BYTES_PER_RPC = 8 * 1024 * 1024


class Loop:
    """One container's prefetched inputs and queued outputs (there is one input/output manager per container)."""

    def __init__(self) -> None:
        self.buffer: collections.deque[Any] = collections.deque()  # FunctionGetInputsItem, in order
        self.pending: list[Any] = []  # FunctionPutOutputsItem, not sent yet
        self.sender: asyncio.Future[None] | None = None
        self.started: dict[str, float] = {}  # input id -> when it was handed to modal's loop
        self.mean_s: float | None = None  # moving mean of an input's time in the container

    def prefetch_size(self) -> int:
        least = os.environ.get(PREFETCH_MIN_ENV, "")
        least_n = min(MAX_PREFETCH, int(least)) if least.isdigit() else 1
        if self.mean_s is None:
            return max(1, least_n)
        return max(1, least_n, min(MAX_PREFETCH, int(PREFETCH_BUDGET_S / max(self.mean_s, 1e-5))))

    def observe(self, input_ids: list[str]) -> None:
        now = time.monotonic()
        for input_id in input_ids:
            began = self.started.pop(input_id, None)
            if began is not None:
                took = now - began
                self.mean_s = took if self.mean_s is None else 0.8 * self.mean_s + 0.2 * took

    def drop_cancelled(self, input_ids: set[str]) -> list[Any]:
        """Take the waiting inputs that were cancelled out of the buffer."""
        dropped = [item for item in self.buffer if item.input_id in input_ids]
        if dropped:
            self.buffer = collections.deque(item for item in self.buffer if item.input_id not in input_ids)
        return dropped


def _batches(items: list[Any]) -> list[list[Any]]:
    out: list[list[Any]] = []
    size = 0
    for item in items:
        n = item.ByteSize()
        if not out or len(out[-1]) >= MAX_OUTPUTS_PER_RPC or size + n > MAX_OUTPUT_BYTES_PER_RPC:
            out.append([])
            size = 0
        out[-1].append(item)
        size += n
    return out


class _Modal:
    """The parts of modal this loop uses, imported when it is installed (never at import: berth imports this file)."""

    def __init__(self) -> None:
        from grpclib import Status
        from modal._runtime import container_io_manager as cim
        from modal._utils.grpc_utils import Retry
        from modal.client import HEARTBEAT_TIMEOUT
        from modal_proto import api_pb2

        self.cim, self.api_pb2, self.heartbeat_timeout = cim, api_pb2, HEARTBEAT_TIMEOUT
        self.output_retry = Retry(additional_status_codes=[Status.RESOURCE_EXHAUSTED], max_retries=None)
        self.heartbeat_retry = Retry(attempt_timeout=HEARTBEAT_TIMEOUT)
        manager = cim._ContainerIOManager
        self.stock_generate, self.stock_send = manager._generate_inputs, manager._send_outputs


_modal: _Modal | None = None


def _m() -> _Modal:
    assert _modal is not None, "berth_loop.install() first"
    return _modal


def _loop_of(manager: Any) -> Loop:
    state: Loop | None = manager.__dict__.get("_berth_loop")
    if state is None:
        state = manager.__dict__["_berth_loop"] = Loop()
    return state


def _single_use(manager: Any) -> bool:
    return bool(manager.function_def.single_use_containers or manager.function_def.max_inputs == 1)


async def _send_now(manager: Any, outputs: list[Any]) -> None:
    m = _m()
    for batch in _batches(outputs):
        await manager._client._stub.FunctionPutOutputs(
            m.api_pb2.FunctionPutOutputsRequest(outputs=batch), retry=m.output_retry
        )


async def _drain(manager: Any, state: Loop) -> None:
    while state.pending:
        outputs, state.pending = state.pending, []
        await _send_now(manager, outputs)


def _kick(manager: Any, state: Loop) -> None:
    if state.sender is None or state.sender.done():
        state.sender = asyncio.ensure_future(_drain(manager, state))


async def _flush(manager: Any, state: Loop) -> None:
    """Send every queued output, and wait for a send in flight (its error, if any, is raised here)."""
    while state.pending or (state.sender is not None and not state.sender.done()):
        _kick(manager, state)
        assert state.sender is not None
        await asyncio.shield(state.sender)
    if state.sender is not None:
        sender, state.sender = state.sender, None
        sender.result()


async def _fetch(manager: Any, state: Loop, request: Any) -> None:
    """One FunctionGetInputs, asking for as many inputs as the prefetch budget allows, into the buffer."""
    await _flush(manager, state)  # nothing waits here while the container waits for input
    request.input_concurrency = manager.get_input_concurrency()
    want = state.prefetch_size()
    metadata = [(PREFETCH_HEADER, str(want))] if want > 1 else None
    response = await manager._client._stub.FunctionGetInputs(request, metadata=metadata)
    if response.rate_limit_sleep_duration:
        await asyncio.sleep(response.rate_limit_sleep_duration)
    else:
        state.buffer.extend(response.inputs)


async def _generate_inputs(manager: Any, batch_max_size: int, batch_wait_ms: int) -> AsyncIterator[list[Any]]:
    m = _m()
    if batch_max_size > 0 or _single_use(manager):
        async for inputs in m.stock_generate(manager, batch_max_size, batch_wait_ms):
            yield inputs
        return
    state = _loop_of(manager)
    request = m.api_pb2.FunctionGetInputsRequest(function_id=manager.function_id)
    while True:
        await manager._input_slots.acquire()
        yielded = False
        try:
            if not state.buffer:
                await _fetch(manager, state, request)
            if not state.buffer:
                continue
            item = state.buffer.popleft()
            if item.kill_switch:
                return
            live = manager.current_inputs.get(item.input_id)
            if live is not None and live.retry_counts[live.input_ids.index(item.input_id)] == item.retry_count:
                m.cim.logger.warning(f"Skipping duplicate delivery of input {item.input_id}")
                continue
            state.started[item.input_id] = time.monotonic()
            args = (item.input_id, item.retry_count, item.function_call_id, item.attempt_token, item.input)
            yield [(*args, item.function_call_invocation_type)]
            yielded = True
            if item.input.final_input or _single_use(manager):
                return
        finally:
            if not yielded:
                manager._input_slots.release()


async def _send_outputs(manager: Any, io_context: Any, outputs: list[Any]) -> None:
    state = _loop_of(manager)
    state.observe(list(io_context.input_ids))
    if not state.buffer or len(io_context.input_ids) != 1:
        await _flush(manager, state)  # keeps outputs in order
        await _m().stock_send(manager, io_context, outputs)
        return
    state.pending.extend(outputs)
    manager.exit_context(io_context)
    _kick(manager, state)


async def _heartbeat_handle_cancellations(manager: Any) -> bool:
    """modal's own, and a cancelled input that still waits here is dropped and reported terminated."""
    m = _m()
    async with manager.heartbeat_condition:
        while manager._waiting_for_memory_snapshot:
            await manager.heartbeat_condition.wait()
        request = m.api_pb2.ContainerHeartbeatRequest(canceled_inputs_return_outputs_v2=True)
        response = await manager._client._stub.ContainerHeartbeat(request, retry=m.heartbeat_retry)
    if not response.HasField("cancel_input_event"):
        return False
    cancelled = set(response.cancel_input_event.input_ids)
    for input_id in cancelled:
        if input_id in manager.current_inputs:
            manager.current_inputs[input_id].cancel()
    dropped = _loop_of(manager).drop_cancelled(cancelled)
    if dropped:
        now = time.time()
        result = m.api_pb2.GenericResult(status=m.api_pb2.GenericResult.GENERIC_STATUS_TERMINATED)
        await _send_now(
            manager,
            [
                m.api_pb2.FunctionPutOutputsItem(
                    input_id=i.input_id,
                    input_started_at=now,
                    output_created_at=now,
                    result=result,
                    retry_count=i.retry_count,
                )
                for i in dropped
            ],
        )
    return True


def install() -> bool:
    """Replace the manager's methods; False (and modal's own loop) where this modal is not the one we know."""
    global _modal
    if _modal is not None:  # installed already (a standby loop, before its task came)
        return True
    try:
        import modal

        if modal.__version__ != MODAL_VERSION:
            return False
        _modal = _Modal()
    except ImportError:
        return False
    manager: Any = _modal.cim._ContainerIOManager
    for name, replacement in (
        ("_generate_inputs", _generate_inputs),
        ("_send_outputs", _send_outputs),
        ("_heartbeat_handle_cancellations", _heartbeat_handle_cancellations),
    ):
        setattr(manager, name, functools.wraps(getattr(manager, name))(replacement))
    return True


STANDBY_FLAG = "--standby"
SNAPSHOT_STANDBY_FLAG = "--standby-snapshot"
STANDBY_READY = b"berth-standby-ready\n"
# A standby prepares at the lowest priority, so it never takes the CPU from running containers; the worker puts
# every thread of it back to 0 at hand-over (raising it again is not the container's to do).
STANDBY_NICE = 19


def main() -> None:
    import runpy

    install()
    runpy.run_module("modal._container_entrypoint", run_name="__main__", alter_sys=True)


def _take_task(task: dict[str, Any]) -> None:
    """Become the task the worker handed over: its whole environment (nothing of the standby's is left), its
    working directory, and stdin from /dev/null as in a fresh container."""
    import importlib

    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.environ.clear()
    os.environ.update(task["env"])
    os.chdir(task["cwd"])
    sys.path[0] = os.getcwd()
    importlib.invalidate_caches()  # the task's files were written under /root after the imports


def _read_task() -> dict[str, Any] | None:
    import json

    line = sys.stdin.buffer.readline()
    return json.loads(line) if line else None  # None: the worker discarded this container


def standby() -> None:
    """Import what a container's start imports, then wait for the task (see the module's docstring)."""
    import importlib

    os.nice(STANDBY_NICE)
    install()
    # Its imports, not its main; then out of sys.modules again, so that runpy runs it as __main__ as in a fresh
    # container (and does not warn that it was imported already).
    importlib.import_module("modal._container_entrypoint")
    del sys.modules["modal._container_entrypoint"]
    sys.stdout.buffer.write(STANDBY_READY)
    sys.stdout.flush()
    task = _read_task()
    if task is None:
        sys.exit(0)
    _take_task(task)
    main()


def standby_snapshot() -> None:
    """A memory-snapshot standby (berth.worker.standby): modal's entrypoint runs at once, imports the function,
    runs its snap=True enter hooks and checkpoints; its restore then waits for the task on stdin first, and
    goes on with modal's own restore (the restore state the worker writes)."""
    os.nice(STANDBY_NICE)
    install()
    from modal._runtime import task_lifecycle_manager as tlm

    stock = tlm._TaskLifecycleManager.memory_restore

    async def memory_restore(self: Any) -> None:
        task = await asyncio.get_running_loop().run_in_executor(None, _read_task)
        if task is None:
            os._exit(0)
        _take_task(task)
        await stock(self)

    tlm._TaskLifecycleManager.memory_restore = functools.wraps(stock)(memory_restore)  # type: ignore[method-assign]
    main()


if __name__ == "__main__":
    mode = sys.argv[1:]
    del sys.argv[1:]
    if mode == [STANDBY_FLAG]:
        standby()
    elif mode == [SNAPSHOT_STANDBY_FLAG]:
        standby_snapshot()
    else:
        main()
