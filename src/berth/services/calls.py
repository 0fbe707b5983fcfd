"""Function calls from a client's side: FunctionMap, FunctionPutInputs, FunctionGetOutputs,
cancellation and the data-out stream of generators."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from modal_proto import api_pb2

from berth.clock import Clock
from berth.errors import InvalidArgument, NotFound, ResourceExhausted
from berth.ids import new_id
from berth.services.catalog import Catalog
from berth.services.inputs import InputService, call_key
from berth.services.notify import Notifier
from berth.services.results import terminated
from berth.store.ports import CallStore
from berth.store.records import CallRecord

MAX_INPUTS_OUTSTANDING = 1000
MAX_OUTPUT_POLL_S = 55.0
# A map's poll that finds fewer outputs than it may carry waits this long for more before it answers, so that
# one reply carries many outputs instead of one RPC per output. Unary calls and FunctionCall.get never wait.
MAP_BATCH_WINDOW_S = 0.01
DATA_STREAM_HOLD_S = 50.0


def data_key(call_id: str, direction: str) -> str:
    return f"data:{call_id}:{direction}"


def _cursor(last_entry_id: str) -> int:
    head = last_entry_id.split("-", 1)[0]
    return int(head) if head.isdigit() else 0


class CallService:
    def __init__(
        self,
        store: CallStore,
        catalog: Catalog,
        inputs: InputService,
        notifier: Notifier,
        clock: Clock,
        max_object_bytes: int,
    ) -> None:
        self._store = store
        self._catalog = catalog
        self._inputs = inputs
        self._notifier = notifier
        self._clock = clock
        self._max_object_bytes = max_object_bytes
        self.on_cancel: list[object] = []

    def _check_input(self, item: api_pb2.FunctionPutInputsItem) -> tuple[str, int, str, bytes]:
        if len(item.input.args) > self._max_object_bytes:
            raise ResourceExhausted(
                f"Input of {len(item.input.args)} bytes exceeds the inline limit of {self._max_object_bytes}; "
                "larger arguments must be uploaded as blobs"
            )
        return new_id("in"), item.idx, item.input.method_name, item.input.SerializeToString()

    async def map(self, req: api_pb2.FunctionMapRequest) -> api_pb2.FunctionMapResponse:
        fn = await self._catalog.definition(req.function_id)
        call_id = new_id("fc")
        unary = req.function_call_type == api_pb2.FUNCTION_CALL_TYPE_UNARY
        call = CallRecord(
            call_id,
            req.function_id,
            req.function_call_type,
            req.function_call_invocation_type,
            req.return_exceptions,
            0,
            unary,
            self._clock.now(),
            req.parent_input_id,
        )
        items = [self._check_input(i) for i in req.pipelined_inputs]
        await self._store.create_call(call)
        if items:
            await self._inputs.enqueue(call_id, req.function_id, items)
        return api_pb2.FunctionMapResponse(
            function_call_id=call_id,
            pipelined_inputs=[api_pb2.FunctionPutInputsResponseItem(idx=i[1], input_id=i[0]) for i in items],
            retry_policy=fn.retry_policy,
            function_call_jwt=call_id,
            sync_client_retries_enabled=False,
            max_inputs_outstanding=MAX_INPUTS_OUTSTANDING,
        )

    async def _call(self, call_id: str) -> CallRecord:
        call = await self._store.get_call(call_id)
        if call is None:
            raise NotFound(f"Function call {call_id} not found")
        return call

    async def put_inputs(self, req: api_pb2.FunctionPutInputsRequest) -> api_pb2.FunctionPutInputsResponse:
        call = await self._call(req.function_call_id)
        if req.function_id and req.function_id != call.function_id:
            raise InvalidArgument(f"Function call {call.call_id} does not belong to function {req.function_id}")
        items = [self._check_input(i) for i in req.inputs]
        await self._inputs.enqueue(call.call_id, call.function_id, items)
        return api_pb2.FunctionPutInputsResponse(
            inputs=[api_pb2.FunctionPutInputsResponseItem(idx=i[1], input_id=i[0]) for i in items]
        )

    async def finish_inputs(self, req: api_pb2.FunctionFinishInputsRequest) -> None:
        await self._call(req.function_call_id)
        await self._store.finish_call_inputs(req.function_call_id, req.num_inputs)

    async def get_outputs(self, req: api_pb2.FunctionGetOutputsRequest) -> api_pb2.FunctionGetOutputsResponse:
        call = await self._call(req.function_call_id)
        cursor = _cursor(req.last_entry_id)
        deadline = time.monotonic() + min(max(req.timeout, 0.0), MAX_OUTPUT_POLL_S)
        limit = req.max_values or 1000
        span = _idx_span(req)
        while True:
            with self._notifier.listen(call_key(call.call_id)) as waiter:
                outs = await self._store.outputs_after(call.call_id, cursor, limit, span)
                remaining = deadline - time.monotonic()
                if outs or remaining <= 0 or not await waiter.wait(remaining):
                    break
        if not outs:
            outs = await self._store.outputs_after(call.call_id, cursor, limit, span)
        elif len(outs) < limit and req.timeout > 0 and call.call_type == api_pb2.FUNCTION_CALL_TYPE_MAP:
            await asyncio.sleep(MAP_BATCH_WINDOW_S)
            outs += await self._store.outputs_after(call.call_id, outs[-1].seq, limit - len(outs), span)
        resp = api_pb2.FunctionGetOutputsResponse(last_entry_id=f"{outs[-1].seq if outs else cursor}-0")
        if not outs:
            # Clients read this only from an empty reply (no outputs and nothing unfinished: expired);
            # counting on every poll of a large map would cost a scan of its inputs each time.
            resp.num_unfinished_inputs = await self._store.unfinished_count(call.call_id)
        for o in outs:
            resp.outputs.add(
                idx=o.idx,
                input_id=o.input_id,
                result=api_pb2.GenericResult.FromString(o.result),
                data_format=o.data_format,
                retry_count=o.retry_count,
            )
        if req.clear_on_success and call.call_type == api_pb2.FUNCTION_CALL_TYPE_UNARY:
            await self._store.delete_outputs([o.seq for o in outs])
        return resp

    async def cancel(self, req: api_pb2.FunctionCallCancelRequest) -> list[tuple[str, str]]:
        """Terminates queued inputs now; returns (input_id, holder) of running ones for the containers."""
        await self._call(req.function_call_id)
        running: list[tuple[str, str]] = []
        for state in await self._store.open_inputs_of_call(req.function_call_id):
            if state.state == "queued":
                await self._inputs.finish(state.input_id, None, terminated(), api_pb2.DATA_FORMAT_PICKLE)
            elif state.holder:
                running.append((state.input_id, state.holder))
        return running

    async def from_id(self, call_id: str) -> api_pb2.FunctionCallFromIdResponse:
        call = await self._call(call_id)
        # The JS SDK reads the call's app and function from the metadata (to find the call's logs).
        app_id = (await self._catalog.record(call.function_id)).app_id
        return api_pb2.FunctionCallFromIdResponse(
            function_call_id=call_id,
            num_inputs=call.num_inputs,
            metadata=api_pb2.FunctionCallHandleMetadata(app_id=app_id, function_id=call.function_id),
        )

    # data channels
    async def put_data(self, call_id: str, direction: str, chunks: list[api_pb2.DataChunk]) -> None:
        await self._call(call_id)
        await self._store.put_chunks(call_id, direction, [(c.index, c.SerializeToString()) for c in chunks])
        self._notifier.notify(data_key(call_id, direction))

    async def stream_data(self, call_id: str, direction: str, last_index: int) -> AsyncIterator[api_pb2.DataChunk]:
        await self._call(call_id)
        deadline = time.monotonic() + DATA_STREAM_HOLD_S
        while True:
            with self._notifier.listen(data_key(call_id, direction)) as waiter:
                for idx, raw in await self._store.chunks_after(call_id, direction, last_index):
                    last_index = idx
                    yield api_pb2.DataChunk.FromString(raw)
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not await waiter.wait(remaining):
                    return


def _idx_span(req: api_pb2.FunctionGetOutputsRequest) -> tuple[int, int] | None:
    """The inputs whose outputs are asked for, both ends inclusive: FunctionCall.get(index=k) asks for k alone,
    FunctionCall.iter(start=, end=) for pages of a range. None: every input."""
    if not req.HasField("start_idx") and not req.HasField("end_idx"):
        return None
    return (req.start_idx if req.HasField("start_idx") else 0, req.end_idx if req.HasField("end_idx") else 2**31 - 1)
