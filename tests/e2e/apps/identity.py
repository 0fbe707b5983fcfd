"""A container tries to act as another task: take another function's inputs and answer another
task's input. It prints the status codes it got."""

import asyncio
import os
import time

import modal

app = modal.App("e2e-identity")


@app.function()
def victim(x: int, note: str) -> str:
    with open(note, "w") as f:  # tell the test which input this container holds
        f.write(modal.current_input_id() or "")
    time.sleep(x)
    return "ok"


@app.function()
def intruder(other_function_id: str, other_input_id: str) -> list[str]:
    from grpclib.client import Channel
    from grpclib.exceptions import GRPCError
    from modal_proto import api_grpc, api_pb2

    url = os.environ["MODAL_SERVER_URL"]
    metadata = dict(kv.split(":", 1) for kv in os.environ["MODAL_OVERRIDE_HEADERS"].split(","))

    async def probe() -> list[str]:
        if url.startswith("unix://"):
            channel = Channel(path=url.removeprefix("unix://"))
        else:
            host, port = url.removeprefix("http://").rsplit(":", 1)
            channel = Channel(host, int(port))
        stub = api_grpc.ModalClientStub(channel)
        out = []
        try:
            await stub.FunctionGetInputs(
                api_pb2.FunctionGetInputsRequest(function_id=other_function_id), metadata=metadata
            )
            out.append("get_inputs_other=ACCEPTED")
        except GRPCError as exc:
            out.append(f"get_inputs_other={exc.status.name}")
        forged = api_pb2.FunctionPutOutputsItem(
            input_id=other_input_id,
            result=api_pb2.GenericResult(status=api_pb2.GenericResult.GENERIC_STATUS_SUCCESS),
        )
        try:
            await stub.FunctionPutOutputs(api_pb2.FunctionPutOutputsRequest(outputs=[forged]), metadata=metadata)
            out.append("put_outputs_other=ACCEPTED")
        except GRPCError as exc:
            out.append(f"put_outputs_other={exc.status.name}")
        channel.close()
        return out

    return asyncio.run(probe())


if __name__ == "__main__":
    import sys

    note = sys.argv[1]
    with app.run():
        call = victim.spawn(6, note)
        while not (os.path.exists(note) and open(note).read()):
            time.sleep(0.1)
        for line in intruder.remote(victim.object_id, open(note).read()):
            print(line)
        print(f"victim={call.get(timeout=60)}")
