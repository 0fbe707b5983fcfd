"""The control plane as a client of a worker's command router, for the V1 sandbox RPCs that the client sends
to the server rather than to the router (SandboxStdinWrite): one short gRPC call with a grant the server
signed for that task, like any client's."""

from __future__ import annotations

from grpclib.client import Channel
from grpclib.exceptions import GRPCError
from modal_proto import task_command_router_pb2 as sr
from modal_proto.task_command_router_grpc import TaskCommandRouterStub

from berth.errors import FailedPrecondition

_CALL_TIMEOUT_S = 30.0


async def write_sandbox_stdin(url: str, jwt: str, task_id: str, offset: int, data: bytes, eof: bool) -> None:
    """SandboxStdinWriteV2 on the router at `url` (http://host:port)."""
    host, _, port = url.removeprefix("http://").rstrip("/").rpartition(":")
    channel = Channel(host.strip("[]"), int(port))
    try:
        stub = TaskCommandRouterStub(channel)
        req = sr.SandboxStdinWriteV2Request(task_id=task_id, offset=offset, data=data, eof=eof)
        await stub.SandboxStdinWriteV2(req, metadata={"authorization": f"Bearer {jwt}"}, timeout=_CALL_TIMEOUT_S)
    except GRPCError as exc:
        raise FailedPrecondition(f"Could not write to the sandbox's stdin: {exc.message}") from exc
    finally:
        channel.close()
