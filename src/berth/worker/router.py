"""The TaskCommandRouter gRPC service (modal_proto.task_command_router), served by each worker beside its
containers: exec, exec stdio and stdin, and a sandbox's own entrypoint stdio. Clients reach it with the URL
and JWT the control plane hands out (SandboxCreateV2, SandboxGetCommandRouterAccess,
TaskGetCommandRouterAccess). Every call must carry `authorization: Bearer <jwt>` signed by the server, unexpired
and naming the task the request is about; anything else is UNAUTHENTICATED. RPCs not served here answer
UNIMPLEMENTED with their name."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import Any

from google.protobuf.message import Message
from grpclib.const import Cardinality, Handler, Status
from grpclib.exceptions import GRPCError
from grpclib.server import Server, Stream
from modal_proto import task_command_router_pb2 as sr
from modal_proto.task_command_router_grpc import TaskCommandRouterBase

from berth.clock import Clock
from berth.errors import BerthError, FailedPrecondition, InvalidArgument
from berth.grants import verify_token
from berth.worker.execs import StdinOutOfOrder
from berth.worker.probes import NotReady
from berth.worker.pty import DEFAULT_TERM, PtySettings
from berth.worker.session import ExecError, ExecNotFound, ExecRequest, TaskSession

log = logging.getLogger("berth.worker.router")

ROUTER_AUDIENCE = "task-router"
_DEFAULT_READY_TIMEOUT_S = 300.0  # Sandbox.wait_until_ready's own default
SecretResolver = Callable[[list[str]], Awaitable[dict[str, str]]]
Snapshotter = Callable[[str], Awaitable[str]]  # a running task's id → the id of an image of its filesystem
# What the 1.6.4 client offers that Berth does not do yet, by the RPC it sends: refused with the method's name.
_NOT_YET = {
    "TaskSnapshotDirectory": "Sandbox.snapshot_directory()",
    "TaskMountDirectory": "Sandbox.mount_image()",
    "TaskUnmountDirectory": "Sandbox.unmount_image()",
    "TaskSnapshotMemory": "Sandbox._experimental_snapshot() (memory snapshots)",
    # A sandbox's allowlist is set when it starts (berth.worker.egress); changing it while it runs is not.
    "TaskSetNetworkAccess": "Sandbox._experimental_set_outbound_network_policy()",
    "TaskSetOutboundPolicy": "Sandbox._experimental_update_outbound_policy()",
}


class GeneratedRouterService(TaskCommandRouterBase):  # type: ignore[misc]
    """Only used to read the generated RPC table."""


GeneratedRouterService.__abstractmethods__ = frozenset()


class CommandRouter:
    """The router's behaviour: `sessions` finds a running task, `secrets` resolves secret ids to env."""

    def __init__(
        self, sessions: Callable[[str], TaskSession | None], clock: Clock, secrets: SecretResolver | None = None
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self.secrets = secrets
        self.snapshots: Snapshotter | None = None
        # A remote worker's volumes are copies of each volume's head: a reload brings them up to it.
        self.reload_volumes: Callable[[str], Awaitable[None]] | None = None
        self.public_pem: bytes | None = None  # the server's grant key, handed over once known
        self._server: Server | None = None
        self.url = ""

    # serving
    def __mapping__(self) -> dict[str, Handler]:
        mapping: dict[str, Handler] = {}
        for path, handler in GeneratedRouterService().__mapping__().items():
            rpc = path.rsplit("/", 1)[1]
            impl = getattr(self, f"rpc_{rpc}", None)
            if rpc in _NOT_YET:
                func = _not_supported(_NOT_YET[rpc])
            elif impl is None:
                func = _unimplemented(rpc)
            elif handler.cardinality == Cardinality.STREAM_UNARY:
                func = self._wrap_client_stream(rpc, impl)
            else:
                func = self._wrap(rpc, impl)
            mapping[path] = Handler(func, handler.cardinality, handler.request_type, handler.reply_type)
        return mapping

    async def start(self, host: str, port: int = 0, advertise: str | None = None) -> str:
        """Serve on host:port (0: any free port); returns the URL clients use."""
        self._server = Server([self])
        await self._server.start(host, port)
        bound = self._server._server.sockets[0].getsockname()[1]
        self.url = f"http://{advertise or host}:{bound}"
        log.info("command router serving on %s", self.url)
        return self.url

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _wrap(self, rpc: str, impl: Callable[..., Any]) -> Callable[[Stream[Any, Any]], Awaitable[None]]:
        streaming = inspect.isasyncgenfunction(impl)

        async def handler(stream: Stream[Any, Any]) -> None:
            request = await stream.recv_message()
            assert request is not None
            with _mapped_errors(rpc):
                session = self._authorize(stream.metadata or {}, request.task_id)
                if streaming:
                    async for reply in impl(session, request):
                        await stream.send_message(reply)
                else:
                    await stream.send_message(await impl(session, request))

        return handler

    def _wrap_client_stream(self, rpc: str, impl: Callable[..., Any]) -> Callable[[Stream[Any, Any]], Awaitable[None]]:
        """Client-streaming RPCs: the first message names the task (and is where the grant is checked)."""

        async def handler(stream: Stream[Any, Any]) -> None:
            with _mapped_errors(rpc):
                first = await stream.recv_message()
                if first is None or not first.HasField("start"):
                    raise GRPCError(Status.INVALID_ARGUMENT, f"{rpc} must start with a start message")
                session = self._authorize(stream.metadata or {}, first.start.task_id)
                await stream.send_message(await impl(session, first.start, stream))

        return handler

    def _authorize(self, metadata: Mapping[str, Any], task_id: str) -> TaskSession:
        token = str(metadata.get("authorization", "")).removeprefix("Bearer ").strip()
        if not token:
            raise GRPCError(Status.UNAUTHENTICATED, "Missing authorization: Bearer <jwt>")
        if self.public_pem is None:
            raise GRPCError(Status.UNAVAILABLE, "This worker does not know the server's key yet")
        claims = verify_token(self.public_pem, token, ROUTER_AUDIENCE, self._clock.now())
        if claims.get("task_id") != task_id:
            raise GRPCError(Status.UNAUTHENTICATED, f"This token is not for task {task_id}")
        session = self._sessions(task_id)
        if session is None:
            raise GRPCError(Status.NOT_FOUND, f"Task {task_id} is not running on this worker")
        return session

    # exec
    async def rpc_TaskExecStart(self, session: TaskSession, req: sr.TaskExecStartRequest) -> Message:
        if req.container_id:
            raise ExecError("Sidecar containers are not supported by Berth yet")
        env = dict(req.env)
        env.update(await self._secret_env(req.secret_ids, req.secret_sources))
        timeout = float(req.timeout_secs) if req.HasField("timeout_secs") and req.timeout_secs else None
        workdir = req.workdir if req.HasField("workdir") and req.workdir else None
        pty = _pty_settings(req.pty_info) if req.HasField("pty_info") else None
        await session.start_exec(ExecRequest(req.exec_id, list(req.command_args), env, workdir, timeout, pty))
        return sr.TaskExecStartResponse()

    async def _secret_env(self, ids: Any, sources: Any) -> dict[str, str]:
        wanted = [*ids, *(s.secret_id for s in sources if s.secret_id)]
        env: dict[str, str] = {}
        if wanted:
            if self.secrets is None:
                raise ExecError("Named secrets in exec are not available on remote workers yet; use env= instead")
            env.update(await self.secrets(wanted))
        for source in sources:
            if source.HasField("env"):
                env.update(source.env.contents)
        return env

    async def rpc_TaskExecStdioRead(
        self, session: TaskSession, req: sr.TaskExecStdioReadRequest
    ) -> AsyncIterator[Message]:
        process = session.exec(req.exec_id)
        stderr = req.file_descriptor == sr.TASK_EXEC_STDIO_FILE_DESCRIPTOR_STDERR
        async for _, chunk in (process.stderr if stderr else process.stdout).read_from(req.offset):
            session.touch()
            yield sr.TaskExecStdioReadResponse(data=chunk)

    async def rpc_TaskExecStdinWrite(self, session: TaskSession, req: sr.TaskExecStdinWriteRequest) -> Message:
        await session.exec(req.exec_id).stdin.write(req.offset, req.data, req.eof)
        return sr.TaskExecStdinWriteResponse()

    async def rpc_TaskExecStdinWriteStream(
        self, session: TaskSession, start: sr.TaskExecStdinWriteStreamStart, stream: Stream[Any, Any]
    ) -> Message:
        """Start (offset), data chunks, then an explicit end (EOF); a broken stream resumes from
        TaskExecStdinStatus's offset."""
        stdin = session.exec(start.exec_id).stdin
        offset = start.offset
        async for message in stream:
            if message.HasField("end"):
                await stdin.write(offset, b"", eof=True)
                break
            await stdin.write(offset, message.data, eof=False)
            offset += len(message.data)
        return sr.TaskExecStdinWriteStreamResponse()

    async def rpc_TaskExecStdinStatus(self, session: TaskSession, req: sr.TaskExecStdinStatusRequest) -> Message:
        stdin = session.exec(req.exec_id).stdin
        return sr.TaskExecStdinStatusResponse(num_bytes_written=stdin.written, closed=stdin.closed)

    async def rpc_TaskExecPoll(self, session: TaskSession, req: sr.TaskExecPollRequest) -> Message:
        process = session.exec(req.exec_id)
        if process.exit_code is None:
            return sr.TaskExecPollResponse()
        return sr.TaskExecPollResponse(code=process.exit_code)

    async def rpc_TaskExecWait(self, session: TaskSession, req: sr.TaskExecWaitRequest) -> Message:
        process = session.exec(req.exec_id)
        await process.done.wait()
        await asyncio.gather(process.stdout.until_drained(1.0), process.stderr.until_drained(1.0))
        assert process.exit_code is not None
        return sr.TaskExecWaitResponse(code=process.exit_code)

    # the sandbox's filesystem and volumes
    async def rpc_TaskSnapshotFilesystem(self, session: TaskSession, req: sr.TaskSnapshotFilesystemRequest) -> Message:
        if req.container_id:
            raise ExecError("Sidecar containers are not supported by Berth yet")
        if self.snapshots is None:
            raise InvalidArgument("Sandbox.snapshot_filesystem() is not supported by this worker")
        return sr.TaskSnapshotFilesystemResponse(image_id=await self.snapshots(req.task_id))

    async def rpc_TaskReloadVolumes(self, session: TaskSession, req: sr.TaskReloadVolumesRequest) -> Message:
        """On one host Berth's volumes are directories bind-mounted into the container: every write is already
        visible, so there is nothing to reload (as VolumeReload on the control plane). A remote worker holds a
        copy of each volume, which it commits and brings up to the volume's head."""
        if req.container_id:
            raise ExecError("Sidecar containers are not supported by Berth yet")
        if session.exited:
            raise ExecError(f"Task {session.task_id} has finished")
        if self.reload_volumes is not None:
            await self.reload_volumes(session.task_id)
        return sr.TaskReloadVolumesResponse()

    # readiness (Sandbox.wait_until_ready)
    async def rpc_SandboxWaitUntilReady(self, session: TaskSession, req: sr.SandboxWaitUntilReadyTcrRequest) -> Message:
        """Answers once the sandbox's readiness probe first succeeded (at once if it already has). The client
        raises its TimeoutError on DEADLINE_EXCEEDED, and ConflictError (FAILED_PRECONDITION) for a sandbox that
        exited before it was ready, as Modal's V1 path did."""
        if session.readiness is None:
            raise InvalidArgument("Sandbox.wait_until_ready() needs a sandbox created with a readiness_probe")
        timeout = req.timeout if req.timeout > 0 else _DEFAULT_READY_TIMEOUT_S
        try:
            ready_at = await session.readiness.wait(timeout)
        except TimeoutError:
            raise GRPCError(
                Status.DEADLINE_EXCEEDED, f"The sandbox's readiness probe did not succeed within {timeout:g} s"
            ) from None
        except NotReady as exc:
            raise FailedPrecondition(str(exc)) from exc
        return sr.SandboxWaitUntilReadyTcrResponse(ready_at=ready_at)

    # the sandbox's own entrypoint
    async def rpc_SandboxStdioReadV2(
        self, session: TaskSession, req: sr.SandboxStdioReadV2Request
    ) -> AsyncIterator[Message]:
        stderr = req.file_descriptor == sr.SANDBOX_STDIO_FILE_DESCRIPTOR_STDERR
        async for offset, chunk in (session.stderr if stderr else session.stdout).read_from(req.offset):
            yield sr.SandboxStdioReadV2Response(data=chunk, starting_offset=offset)

    async def rpc_SandboxStdinWriteV2(self, session: TaskSession, req: sr.SandboxStdinWriteV2Request) -> Message:
        session.touch()
        await session.stdin.write(req.offset, req.data, req.eof)
        return sr.SandboxStdinWriteV2Response()


def _pty_settings(info: Any) -> PtySettings:
    """The client's terminal as PTYInfo describes it (api_pb2.PTYInfo)."""
    env = {"TERM": info.env_term or DEFAULT_TERM}
    if info.env_colorterm:
        env["COLORTERM"] = info.env_colorterm
    if info.env_term_program:
        env["TERM_PROGRAM"] = info.env_term_program
    return PtySettings(rows=info.winsz_rows, cols=info.winsz_cols, env=env)


@contextlib.contextmanager
def _mapped_errors(rpc: str) -> Iterator[None]:
    try:
        yield
    except (GRPCError, GeneratorExit):
        raise
    except BerthError as exc:
        raise GRPCError(exc.status, exc.message) from exc
    except ExecNotFound as exc:
        raise GRPCError(Status.NOT_FOUND, str(exc)) from exc
    except (ExecError, StdinOutOfOrder) as exc:
        raise GRPCError(Status.FAILED_PRECONDITION, str(exc)) from exc
    except Exception as exc:
        log.exception("%s failed", rpc)
        raise GRPCError(Status.INTERNAL, f"{rpc} failed on the worker: {exc}") from exc


def _not_supported(method: str) -> Callable[[Stream[Any, Any]], Awaitable[None]]:
    async def handler(stream: Stream[Any, Any]) -> None:
        raise GRPCError(Status.INVALID_ARGUMENT, f"{method} is not supported by Berth yet")

    return handler


def _unimplemented(rpc: str) -> Callable[[Stream[Any, Any]], Awaitable[None]]:
    async def handler(stream: Stream[Any, Any]) -> None:
        raise GRPCError(Status.UNIMPLEMENTED, f"Berth does not implement {rpc} yet")

    return handler
