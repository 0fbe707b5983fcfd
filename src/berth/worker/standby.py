"""What a pooled memory-snapshot container talks to before it has a task (berth.worker.sandbox_pool).

A function with `enable_memory_snapshot=True` gets standby containers of its own: modal's entrypoint starts in
them with `MODAL_ENABLE_SNAP_RESTORE=1` and a `checkpoint_id`, imports the function, runs its
`@modal.enter(snap=True)` hooks and then asks for its snapshot (`ContainerCheckpoint`) and waits for
`/__modal/restore-state.json`, as on Modal. There is no CRIU: the "snapshot" is that waiting process itself.
At hand-over the worker gives it the task (its environment on the loop's stdin, then the restore state), and
modal continues as after a restore, with the task's identity, and runs the snap=False hooks and its inputs.

Before hand-over the container has no task and no identity, so it does not reach the server: its
MODAL_SERVER_URL is this small gRPC server on a unix socket in its own directory (bind-mounted in), which
answers ContainerHello, ContainerCheckpoint (the container is then ready) and a heartbeat, and refuses every
other call by name: a snap=True hook cannot use Modal's API (Dicts, Queues, other functions) on Berth."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from google.protobuf import empty_pb2
from grpclib.const import Handler, Status
from grpclib.exceptions import GRPCError
from grpclib.server import Server, Stream
from modal_proto import api_pb2
from modal_proto.api_grpc import ModalClientBase

log = logging.getLogger("berth.worker.standby")

IN_CONTAINER = "/__berth/standby.sock"
SERVER_URL = f"unix://{IN_CONTAINER}"


class _Generated(ModalClientBase):  # type: ignore[misc]
    """Only used to read the generated RPC table."""


_Generated.__abstractmethods__ = frozenset()

_ANSWERS: dict[str, Callable[[], Any]] = {
    "ClientHello": api_pb2.ClientHelloResponse,
    "ContainerHello": empty_pb2.Empty,
    "ContainerHeartbeat": api_pb2.ContainerHeartbeatResponse,
}


class StandbyServer:
    """One pooled snapshot container's stand-in for the server, until it checkpoints and is handed over."""

    def __init__(self, socket_path: Path) -> None:
        self.path = socket_path
        self.checkpoint_id = ""
        self.checkpointed: asyncio.Event = asyncio.Event()
        self._server: Server | None = None

    def __mapping__(self) -> dict[str, Handler]:
        mapping: dict[str, Handler] = {}
        for path, handler in _Generated().__mapping__().items():
            rpc = path.rsplit("/", 1)[1]
            func: Callable[[Stream[Any, Any]], Awaitable[None]]
            if rpc == "ContainerCheckpoint":
                func = self._checkpoint
            elif rpc in _ANSWERS:
                func = _answer(_ANSWERS[rpc])
            else:
                func = _refuse(rpc)
            mapping[path] = Handler(func, handler.cardinality, handler.request_type, handler.reply_type)
        return mapping

    async def _checkpoint(self, stream: Stream[Any, Any]) -> None:
        request = await stream.recv_message()
        assert request is not None
        self.checkpoint_id = request.checkpoint_id
        await stream.send_message(empty_pb2.Empty())
        self.checkpointed.set()

    async def start(self) -> None:
        self._server = Server([self])
        await self._server.start(path=str(self.path))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self.path.unlink(missing_ok=True)


def _answer(reply: Callable[[], Any]) -> Callable[[Stream[Any, Any]], Awaitable[None]]:
    async def handler(stream: Stream[Any, Any]) -> None:
        await stream.recv_message()
        await stream.send_message(reply())

    return handler


def _refuse(rpc: str) -> Callable[[Stream[Any, Any]], Awaitable[None]]:
    async def handler(stream: Stream[Any, Any]) -> None:
        log.info("a memory-snapshot standby container called %s before its hand-over: refused", rpc)
        raise GRPCError(
            Status.FAILED_PRECONDITION,
            f"{rpc} is not available before a memory snapshot on Berth: @modal.enter(snap=True) hooks (and the "
            "imports before them) run in a standby container that has no task yet, so they cannot call Modal's API "
            "(Dicts, Queues, Volumes' commits, other Functions). Do that in a snap=False enter hook.",
        )

    return handler
