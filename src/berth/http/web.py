"""The web front door's HTTP side: one listening socket per endpoint, each request turned into an ASGI
scope and a function call (berth.services.web), the app's ASGI messages streamed back as the response
or as websocket frames. A client that goes away cancels its input.

The edge is strict where a proxy must be: aiohttp's parser refuses ambiguous framing (Content-Length with
Transfer-Encoding, duplicate Content-Length, CR or LF inside a header), header blocks over its limits get 431,
bodies over `max_body_bytes` get 413, and a response header with CR, LF or NUL from the app gets 502 instead
of being written out."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

from aiohttp import WSMsgType, web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.web_protocol import RequestHandler

from berth.errors import NotFound
from berth.services.web import BODY_CHUNK_BYTES, Message, WebCall, WebService
from berth.worker.network import ServerFirewall

log = logging.getLogger("berth.http.web")

_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "upgrade", "proxy-connection", "te"})
_AUTH_HEADERS = frozenset({b"modal-key", b"modal-secret"})
# How long a cancelled call may take to report its result before its data is dropped anyway.
_CLEANUP_WAIT_S = 60.0
# Bytes that would end a header line early (response splitting) if written into one.
_HEADER_BREAKERS = frozenset(b"\r\n\0")


class _BodyTooLarge(Exception):
    pass


class _FrontHandler(RequestHandler):
    """aiohttp's connection handler, except that a header block over the parser's limits (8190 bytes a line,
    128 headers) is answered 431, as RFC 6585 asks, rather than a bare 400."""

    def handle_error(
        self, request: Any, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        if isinstance(exc, LineTooLong) or (isinstance(exc, BadHttpMessage) and "Too many headers" in exc.message):
            status = 431
            message = (
                "Request Header Fields Too Large: a line of the request head is over 8190 bytes, "
                "or it has too many headers\n"
            )
        return super().handle_error(request, status, exc, message)


class _FrontServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _FrontHandler(self, loop=self._loop, **self._kwargs)


def _invalid_header(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The name of the first header whose name or value would break the response's framing."""
    for name, value in headers:
        if not name or _HEADER_BREAKERS.intersection(name) or _HEADER_BREAKERS.intersection(value) or b":" in name:
            return name
    return None


def build_scope(request: web.BaseRequest, kind: str) -> Message:
    """The ASGI connection scope of a request, as an app behind Modal's front door sees it."""
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    peer = request.transport.get_extra_info("peername") if request.transport else None
    headers = [(k.lower(), v) for k, v in request.raw_headers if k.lower() not in _AUTH_HEADERS]
    scope: Message = {
        "type": kind,
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": f"{request.version.major}.{request.version.minor}",
        "scheme": "ws" if kind == "websocket" else "http",
        "path": request.rel_url.path,
        "raw_path": request.rel_url.raw_path.encode(),
        "query_string": request.rel_url.raw_query_string.encode(),
        "root_path": "",
        "headers": headers,
        "client": (peer[0], peer[1]) if peer else None,
        "server": (sockname[0], sockname[1]) if sockname else None,
    }
    if kind == "http":
        scope["method"] = request.method
    else:
        protocols = request.headers.get("Sec-WebSocket-Protocol", "")
        scope["subprotocols"] = [p.strip() for p in protocols.split(",") if p.strip()]
    return scope


class WebFrontDoor:
    """Implements berth.services.web.Listeners on aiohttp: every endpoint port shares one application."""

    def __init__(
        self, service: WebService, host: str, firewall: ServerFirewall | None = None, max_body_bytes: int = 4 * 1024**3
    ) -> None:
        self._service = service
        self._host = host
        self._firewall = firewall  # opens each endpoint port to containers on the bridge
        self._max_body = max_body_bytes
        # Every path of every port goes to one handler: a low-level server, no router.
        server = _FrontServer(self._handle, handler_cancellation=True, access_log=None)
        self._runner = web.ServerRunner(server, shutdown_timeout=2.0)
        self._sites: dict[int, web.BaseSite] = {}
        self._background: set[asyncio.Task[None]] = set()

    async def setup(self) -> None:
        await self._runner.setup()

    async def open(self, port: int) -> int:
        if port in self._sites:
            return port
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self._host, port))
        except OSError:
            sock.close()
            raise
        actual = int(sock.getsockname()[1])
        site = web.SockSite(self._runner, sock)
        await site.start()
        self._sites[actual] = site
        if self._firewall is not None:
            await self._firewall.allow_async(actual)
        return actual

    async def cleanup(self) -> None:
        for task in list(self._background):
            task.cancel()
        await self._runner.cleanup()

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        try:
            endpoint = await self._service.resolve(int(sockname[1]) if sockname else 0)
        except NotFound as exc:
            return web.Response(status=404, text=exc.message + "\n")
        if endpoint.requires_auth and not await self._service.authorized(
            request.headers.get("Modal-Key"), request.headers.get("Modal-Secret")
        ):
            return web.Response(
                status=401, text="This endpoint requires proxy auth: send valid Modal-Key and Modal-Secret headers.\n"
            )
        if request.headers.get("Upgrade", "").lower() == "websocket":
            kind = "websocket"
        else:
            kind = "http"
        if request.content_length is not None and request.content_length > self._max_body:
            return self._too_large()
        call = await self._service.open_call(endpoint, build_scope(request, kind))
        try:
            if kind == "websocket":
                return await self._websocket(request, call)
            return await self._http(request, call)
        except (asyncio.CancelledError, ConnectionError):
            if not call.responded:
                self._spawn(self._abandon(call, kind))
            else:
                self._spawn(self._finish(call))
            raise

    def _too_large(self) -> web.Response:
        resp = web.Response(
            status=413, text=f"Request body too large: this endpoint takes at most {self._max_body} bytes\n"
        )
        resp.force_close()  # the rest of the body is never read
        return resp

    def _response_start(self, msg: Message, call: WebCall) -> web.StreamResponse | None:
        """The response the app started; None when a header of it would break the response's framing."""
        if (bad := _invalid_header(msg["headers"])) is not None:
            log.warning("web call %s: the app sent header %r with CR, LF or NUL; answered 502", call.call_id, bad[:100])
            self._spawn(self._finish(call))
            return None
        resp = web.StreamResponse(status=msg["status"])
        for name, value in msg["headers"]:
            key = name.decode("latin-1")
            if key.lower() not in _HOP_BY_HOP:
                resp.headers.add(key, value.decode("latin-1"))
        return resp

    async def _http(self, request: web.BaseRequest, call: WebCall) -> web.StreamResponse:
        pump = asyncio.create_task(self._pump_body(request, call))
        resp: web.StreamResponse | None = None
        written = 0
        try:
            async for msg in call.messages():
                if msg["type"] == "http.response.start" and resp is None:
                    resp = self._response_start(msg, call)
                    if resp is None:
                        return web.Response(status=502, text="Bad Gateway: the app's response had an invalid header\n")
                    await resp.prepare(request)
                elif msg["type"] == "http.response.body" and resp is not None:
                    if msg["body"]:
                        written += len(msg["body"])
                        # A client that has the declared length may hang up before the final message.
                        call.responded = resp.content_length is not None and written >= resp.content_length
                        await resp.write(msg["body"])
                    if not msg["more_body"]:
                        await resp.write_eof()
                        call.responded = True
                        break
        finally:
            pump.cancel()
        if resp is None and pump.done() and not pump.cancelled() and isinstance(pump.exception(), _BodyTooLarge):
            await call.close()
            return self._too_large()
        if call.responded:
            # The response is complete; the call's result follows on its own, then its data goes.
            self._spawn(self._finish(call))
            assert resp is not None
            return resp
        await call.close()
        if resp is None:
            status = "no result" if call.result is None else api_status(call.result)
            log.info("web call %s ended without a response (%s)", call.call_id, status)
            return web.Response(status=500, text="Internal Server Error")
        # The app failed mid-response: end the connection rather than pretend the body is complete.
        if request.transport is not None:
            request.transport.close()
        return resp

    async def _pump_body(self, request: web.BaseRequest, call: WebCall) -> None:
        """Forward the body as it arrives: each message carries what is buffered now (up to a chunk), so
        the first one reaches the app at once even when the client uploads slowly. A chunked body that
        grows past the limit cancels the call."""
        content = request.content
        total = 0
        while True:
            data = await content.read(BODY_CHUNK_BYTES)
            buffer = bytearray(data)
            while (
                data
                and len(buffer) < BODY_CHUNK_BYTES
                and (more := content.read_nowait(BODY_CHUNK_BYTES - len(buffer)))
            ):
                buffer += more
            total += len(buffer)
            if total > self._max_body:
                await call.cancel()  # before the app could answer a body it never saw the end of
                raise _BodyTooLarge
            done = not data or content.at_eof()
            await call.send({"type": "http.request", "body": bytes(buffer), "more_body": not done})
            if done:
                return

    async def _websocket(self, request: web.BaseRequest, call: WebCall) -> web.StreamResponse:
        await call.send({"type": "websocket.connect"})
        ws: web.WebSocketResponse | None = None
        reader: asyncio.Task[None] | None = None
        try:
            async for msg in call.messages():
                kind = msg["type"]
                if kind == "websocket.accept" and ws is None:
                    sub = msg.get("subprotocol")
                    ws = web.WebSocketResponse(protocols=(sub,) if sub else ())
                    await ws.prepare(request)
                    reader = asyncio.create_task(self._read_frames(ws, call))
                elif kind == "websocket.send" and ws is not None:
                    if msg["bytes"] is not None:
                        await ws.send_bytes(msg["bytes"])
                    else:
                        await ws.send_str(msg["text"])
                elif kind == "websocket.close":
                    if ws is None:
                        await call.close()
                        return web.Response(status=403, text="The app closed the websocket before accepting it")
                    await ws.close(code=msg["code"], message=str(msg.get("reason", "")).encode())
        finally:
            if reader is not None:
                reader.cancel()
        await call.close()
        if ws is None:
            return web.Response(status=500, text="Internal Server Error")
        if not ws.closed:
            await ws.close()
        return ws

    async def _read_frames(self, ws: web.WebSocketResponse, call: WebCall) -> None:
        async for frame in ws:
            if frame.type == WSMsgType.TEXT:
                await call.send({"type": "websocket.receive", "text": frame.data})
            elif frame.type == WSMsgType.BINARY:
                await call.send({"type": "websocket.receive", "bytes": frame.data})
        await call.send({"type": "websocket.disconnect", "code": ws.close_code or 1005})

    async def _finish(self, call: WebCall) -> None:
        try:
            async with asyncio.timeout(_CLEANUP_WAIT_S):
                async for _ in call.messages():
                    pass
        except TimeoutError:
            pass
        await call.close()

    async def _abandon(self, call: WebCall, kind: str) -> None:
        """The client disconnected: tell the app, cancel the input, and drop the call's data once it ends."""
        try:
            await call.send({"type": "http.disconnect" if kind == "http" else "websocket.disconnect"})
            await call.cancel()
        except Exception:
            log.exception("cancelling web call %s failed", call.call_id)
        await self._finish(call)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def api_status(result: Any) -> str:
    return f"status {int(result.status)}: {result.exception or 'no exception'}"


async def start_front_door(
    service: WebService, host: str, firewall: ServerFirewall | None = None, max_body_bytes: int = 4 * 1024**3
) -> WebFrontDoor:
    front = WebFrontDoor(service, host, firewall, max_body_bytes)
    await front.setup()
    service.listeners = front
    await service.start()
    return front
