"""The one ordered chain every RPC passes through: metrics, request context, size limit, authentication,
logging and error mapping. Servicers stay thin because of it."""

from __future__ import annotations

import inspect
import logging
import secrets
import struct
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import Any, Protocol, cast

from google.protobuf.message import DecodeError, Message
from grpclib.const import Cardinality, Handler, Status
from grpclib.exceptions import GRPCError
from grpclib.server import Stream

from berth import client_warnings
from berth.api.caller import Caller, current_caller
from berth.errors import BerthError, disk_full

log = logging.getLogger("berth.api")

TASK_ID_HEADER = "x-berth-task-id"
PREFETCH_HEADER = "x-berth-prefetch"  # sent by berth.worker.berth_loop, which cannot import this
TASK_SECRET_HEADER = "x-berth-task-secret"
WARNING_HEADER = "x-modal-warning"  # the client prints each (modal/_utils/grpc_utils.py)


class Authenticator(Protocol):
    async def client(self, token_id: str, token_secret: str) -> str | None:
        """Returns the token's environment scope ('' for any) or None when the pair is not valid."""

    async def container(self, task_id: str, secret: str) -> bool: ...

    async def environment_of(self, object_id: str) -> str | None:
        """The environment an app, function, call, sandbox or state object belongs to; None if unknown."""

    async def authorize(self, caller: Caller, request: Message | None) -> None:
        """Raises PermissionDenied when the caller's environment role does not allow this request."""


# RPCs a process may call before it has credentials.
_UNAUTHENTICATED_RPCS = frozenset({"ClientHello", "TokenFlowCreate", "TokenFlowWait"})


async def _authenticate(auth: Authenticator, rpc: str, metadata: Mapping[str, Any]) -> Caller:
    request_id = secrets.token_hex(6)
    task_id = metadata.get(TASK_ID_HEADER)
    if task_id:
        if not await auth.container(str(task_id), str(metadata.get(TASK_SECRET_HEADER, ""))):
            raise GRPCError(Status.UNAUTHENTICATED, "Container credentials are not valid for this task")
        prefetch = str(metadata.get(PREFETCH_HEADER, ""))
        return Caller(request_id, rpc, task_id=str(task_id), prefetch=int(prefetch) if prefetch.isdigit() else 0)
    token_id, token_secret = metadata.get("x-modal-token-id"), metadata.get("x-modal-token-secret")
    if not token_id or not token_secret:
        if rpc in _UNAUTHENTICATED_RPCS:
            return Caller(request_id, rpc)
        raise GRPCError(Status.UNAUTHENTICATED, 'Token missing. Run `eval "$(berth env)"` to configure a token.')
    scope = await auth.client(str(token_id), str(token_secret))
    if scope is None:
        raise GRPCError(Status.UNAUTHENTICATED, "Token is not valid: it is unknown, revoked or has the wrong secret.")
    version = str(metadata.get("x-modal-client-version", ""))
    kind = str(metadata.get("x-modal-client-type", ""))
    return Caller(
        request_id,
        rpc,
        token_id=str(token_id),
        environment=scope or None,
        client_version=version,
        client_type=int(kind) if kind.isdigit() else 0,
    )


def _check_environment_scope(caller: Caller, request: Message | None) -> None:
    """A token scoped to one environment may not name another one in any request."""
    if caller.environment and request is not None and "environment_name" in request.DESCRIPTOR.fields_by_name:
        requested = request.environment_name
        if requested and requested != caller.environment:
            raise GRPCError(
                Status.PERMISSION_DENIED,
                f"This token may only act in environment '{caller.environment}', not '{requested}'",
            )


# The longest error message sent: it travels in a header (grpc-message), and a message that quotes a huge
# request field (a 70,000-character name) made the client's HTTP/2 stack drop the whole connection.
MAX_ERROR_MESSAGE = 1000


def _bounded(message: str) -> str:
    return message if len(message) <= MAX_ERROR_MESSAGE else message[: MAX_ERROR_MESSAGE - 1] + "…"


# Request fields that name an object by id: a token scoped to one environment may not reach another's
# objects through them (names are already resolved within the caller's environment).
_SCOPED_ID_FIELDS = (
    "app_id",
    "function_id",
    "function_call_id",
    "sandbox_id",
    "volume_id",
    "secret_id",
    "dict_id",
    "queue_id",
)


def _named_ids(request: Message) -> Iterator[str]:
    """The ids of the objects a request names through the fields of _SCOPED_ID_FIELDS, in that order."""
    fields = request.DESCRIPTOR.fields_by_name
    for name in _SCOPED_ID_FIELDS:
        field = fields.get(name)
        if field is not None and field.type == field.TYPE_STRING and not field.is_repeated:
            object_id = getattr(request, name)
            if object_id:
                yield str(object_id)


async def _check_ids_in_scope(auth: Authenticator, caller: Caller, request: Message | None) -> None:
    if not caller.environment or request is None:
        return
    for object_id in _named_ids(request):
        owner = await auth.environment_of(object_id)
        if owner is not None and owner != caller.environment:
            raise GRPCError(
                Status.PERMISSION_DENIED,
                f"This token may only act in environment '{caller.environment}'; {object_id} is not in it",
            )


async def request_environment(auth: Authenticator, caller: Caller, request: Message) -> str | None:
    """The environment a request acts in: the one it names, else that of the first object it names by id;
    None when it names neither (content-addressed uploads, workspace-wide calls)."""
    if "environment_name" in request.DESCRIPTOR.fields_by_name:
        return str(cast(Any, request).environment_name) or caller.environment or "main"
    object_id = next(_named_ids(request), None)
    return await auth.environment_of(object_id) if object_id else None


def _map_error(caller: Caller, exc: BaseException) -> GRPCError:
    if isinstance(exc, GRPCError):
        if exc.message and len(exc.message) > MAX_ERROR_MESSAGE:
            return GRPCError(exc.status, _bounded(exc.message), exc.details)
        return exc
    if isinstance(exc, BerthError):
        return GRPCError(exc.status, _bounded(exc.message))
    if (full := disk_full(exc)) is not None:
        log.warning("request %s (%s) refused: %s", caller.request_id, caller.rpc, exc)
        return GRPCError(full.status, full.message)
    log.exception("request %s (%s) failed", caller.request_id, caller.rpc)
    return GRPCError(Status.INTERNAL, f"Internal error in {caller.rpc} (request id {caller.request_id})")


UnaryImpl = Callable[[Any, Caller], Awaitable[Message]]
StreamImpl = Callable[[Any, Caller], AsyncIterator[Message]]
# Told of every request once it ends: the RPC, its status code's name and how long it took (metrics).
RpcObserver = Callable[[str, str, float], None]
# Told of every request once it ends, with its caller and request ("ok" or the status code's name): the audit
# log keeps the administrative ones (api/audit.py). It never fails the request.
AuditHook = Callable[[Caller, str, Message | None, str], Awaitable[None]]


def observed(
    rpc: str, handler: Callable[[Stream[Any, Any]], Awaitable[None]], observe: RpcObserver | None
) -> Callable[[Stream[Any, Any]], Awaitable[None]]:
    """The outermost link: counts every request, refused ones (unauthenticated, unimplemented) included."""
    if observe is None:
        return handler

    async def counted(stream: Stream[Any, Any]) -> None:
        started = time.monotonic()
        code = "CANCELLED"  # a client that went away mid-request
        try:
            await handler(stream)
            code = "OK"
        except GRPCError as exc:
            code = exc.status.name
            raise
        finally:
            observe(rpc, code, time.monotonic() - started)

    return counted


async def _audit(audit: AuditHook | None, caller: Caller, request: Message | None, status: str) -> None:
    if audit is None:
        return
    try:
        await audit(caller, caller.rpc, request, status)
    except Exception:
        log.exception("request %s (%s): the audit log could not record it", caller.request_id, caller.rpc)


def wrap(
    rpc: str,
    impl: UnaryImpl | StreamImpl,
    auth: Authenticator,
    max_request_bytes: int,
    audit: AuditHook | None = None,
) -> Callable[[Stream[Any, Any]], Awaitable[None]]:
    streaming = inspect.isasyncgenfunction(impl)

    async def handler(stream: Stream[Any, Any]) -> None:
        started = time.monotonic()
        caller = await _authenticate(auth, rpc, stream.metadata or {})
        token = current_caller.set(caller)
        warnings = client_warnings.collect()
        request: Message | None = None
        try:
            try:
                request = await _recv_bounded(stream, rpc, max_request_bytes)
            except DecodeError as exc:
                raise GRPCError(Status.INVALID_ARGUMENT, f"{rpc}: request could not be decoded: {exc}") from exc
            _check_environment_scope(caller, request)
            await _check_ids_in_scope(auth, caller, request)
            await auth.authorize(caller, request)
            if request is not None and request.ByteSize() > max_request_bytes:
                raise GRPCError(
                    Status.RESOURCE_EXHAUSTED,
                    f"{rpc} request of {request.ByteSize()} bytes exceeds the limit of {max_request_bytes}",
                )
            if streaming:
                async for reply in impl(request, caller):  # type: ignore[union-attr]
                    await stream.send_message(reply)
            else:
                await stream.send_message(await impl(request, caller))  # type: ignore[misc]
            if warnings:
                trailer = [(WARNING_HEADER, urllib.parse.quote(w)) for w in warnings]
                await stream.send_trailing_metadata(metadata=trailer)
        except Exception as exc:
            mapped = _map_error(caller, exc)
            await _audit(audit, caller, request, mapped.status.name)
            raise mapped from exc
        else:
            await _audit(audit, caller, request, "ok")
        finally:
            current_caller.reset(token)
            log.debug("%s %s %.1f ms", caller.request_id, rpc, (time.monotonic() - started) * 1000)

    return handler


async def _recv_bounded(stream: Stream[Any, Any], rpc: str, limit: int) -> Any:
    """The request, read as grpclib's `Stream.recv_message` reads it, except that its length prefix is checked
    first: a body over the limit is refused before it is buffered (grpclib reads whatever length a client
    announces, and the fuzzer's 350 MB requests grew the server past the machine's memory)."""
    h2 = stream._stream
    meta = await h2.recv_data(5)
    if not meta:
        return None
    if meta[0]:
        raise GRPCError(Status.INVALID_ARGUMENT, f"{rpc}: compressed requests are not supported")
    length = struct.unpack(">I", meta[1:])[0]
    if length > limit:
        raise GRPCError(Status.RESOURCE_EXHAUSTED, f"{rpc} request of {length} bytes exceeds the limit of {limit}")
    body = await h2.recv_data(length)
    message = stream._codec.decode(body, stream._recv_type)
    (message,) = await stream._dispatch.recv_message(message)
    return message


def unimplemented(rpc: str) -> Callable[[Stream[Any, Any]], Awaitable[None]]:
    async def handler(stream: Stream[Any, Any]) -> None:
        raise GRPCError(Status.UNIMPLEMENTED, f"Berth does not implement {rpc} yet")

    return handler


def build_mapping(
    generated: Mapping[str, Handler],
    servicer: object,
    auth: Authenticator,
    max_request_bytes: int,
    observe: RpcObserver | None = None,
    audit: AuditHook | None = None,
) -> dict[str, Handler]:
    """Serve every RPC of the generated service: ours through the chain, the rest as UNIMPLEMENTED."""
    mapping: dict[str, Handler] = {}
    for path, handler in generated.items():
        rpc = path.rsplit("/", 1)[1]
        impl = getattr(servicer, rpc, None)
        func = observed(rpc, wrap(rpc, impl, auth, max_request_bytes, audit) if impl else unimplemented(rpc), observe)
        if impl and inspect.isasyncgenfunction(impl) != (handler.cardinality == Cardinality.UNARY_STREAM):
            raise TypeError(f"{rpc}: servicer cardinality does not match the generated service")
        mapping[path] = Handler(func, handler.cardinality, handler.request_type, handler.reply_type)
    return mapping


def served_rpcs(servicer: object, generated: Mapping[str, Handler]) -> list[str]:
    return sorted(p.rsplit("/", 1)[1] for p in generated if getattr(servicer, p.rsplit("/", 1)[1], None))
