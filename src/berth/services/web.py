"""The web front door's behaviour: stable endpoint URLs, proxy-auth tokens, and one function call per
HTTP request or websocket, whose ASGI messages travel over the call's data-in and data-out channels.

Each endpoint listens on its own port of the server (persisted per endpoint key, so a URL survives
restarts and redeploys): ASGI apps such as Flask or Streamlit expect to live at `/`, and a port works
from the host and from containers alike, with no DNS. The HTTP side (berth.http.web) owns the sockets."""

from __future__ import annotations

import logging
import pickle
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

from modal_proto import api_pb2

from berth.clock import Clock
from berth.errors import NotFound
from berth.ids import new_id, new_secret, secret_digest, secret_matches
from berth.services.apps import AppService
from berth.services.calls import CallService, data_key
from berth.services.inputs import call_key
from berth.services.notify import Notifier
from berth.store.ports import BlobStore, CallStore, EndpointStore
from berth.store.records import AppRecord, Endpoint

log = logging.getLogger("berth.web")

# Bodies travel in chunks well under the inline object limit, so no chunk needs a blob.
BODY_CHUNK_BYTES = 1024 * 1024
_DEPLOYED = frozenset({api_pb2.APP_STATE_DEPLOYED, api_pb2.APP_STATE_INITIALIZING})
_WAIT_S = 30.0

Message = dict[str, Any]


class Listeners(Protocol):
    async def open(self, port: int) -> int:
        """Start serving endpoint traffic on `port` (0: any free port); returns the port."""


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def endpoint_key(environment: str, app_name: str, function_name: str, label: str, dev: bool) -> str:
    """Modal's naming: the label if one was requested, else `<app>-<function>`; `-dev` for ephemeral apps."""
    base = slug(label) if label else f"{slug(app_name)}-{slug(function_name)}"
    return f"{environment}/{base}{'-dev' if dev else ''}"


async def create_token(store: EndpointStore, now: float) -> tuple[str, str]:
    """A proxy-auth token (Modal-Key wk-…, Modal-Secret ws-…); only the secret's hash is stored."""
    token_id, secret = new_id("wk"), "ws-" + new_secret()
    await store.add_token(token_id, secret_digest(secret), now)
    return token_id, secret


def _flat(headers: list[tuple[bytes, bytes]]) -> list[bytes]:
    return [part for pair in headers for part in pair]


def _pairs(flat: Any) -> list[tuple[bytes, bytes]]:
    items = list(flat)
    return [(items[i], items[i + 1]) for i in range(0, len(items) - 1, 2)]


def encode_message(msg: Message) -> bytes:
    """An ASGI message from the client side (request body, websocket frames, disconnects) as api_pb2.Asgi."""
    kind = msg["type"]
    a = api_pb2.Asgi()
    if kind == "http.request":
        a.http_request.body = msg.get("body", b"")
        a.http_request.more_body = bool(msg.get("more_body", False))
    elif kind == "http.disconnect":
        a.http_disconnect.SetInParent()
    elif kind == "websocket.connect":
        a.websocket_connect.SetInParent()
    elif kind == "websocket.receive":
        if msg.get("bytes") is not None:
            a.websocket_receive.bytes = msg["bytes"]
        else:
            a.websocket_receive.text = msg.get("text") or ""
    elif kind == "websocket.disconnect":
        a.websocket_disconnect.code = int(msg.get("code", 1005))
    else:
        raise ValueError(f"Cannot send ASGI message {kind!r} to an app")
    raw: bytes = a.SerializeToString()
    return raw


def decode_message(raw: bytes) -> Message | None:
    """An ASGI message from the app (response start/body, websocket accept/send/close), or None."""
    a = api_pb2.Asgi.FromString(raw)
    kind = a.WhichOneof("type")
    if kind == "http_response_start":
        s = a.http_response_start
        return {"type": "http.response.start", "status": s.status, "headers": _pairs(s.headers)}
    if kind == "http_response_body":
        b = a.http_response_body
        return {"type": "http.response.body", "body": b.body, "more_body": b.more_body}
    if kind == "websocket_accept":
        w = a.websocket_accept
        sub = w.subprotocol if w.HasField("subprotocol") else None
        return {"type": "websocket.accept", "subprotocol": sub, "headers": _pairs(w.headers)}
    if kind == "websocket_send":
        ws = a.websocket_send
        data: bytes | None = ws.bytes if ws.HasField("bytes") else None
        return {"type": "websocket.send", "bytes": data, "text": ws.text}
    if kind == "websocket_close":
        c = a.websocket_close
        return {"type": "websocket.close", "code": c.code if c.HasField("code") else 1000, "reason": c.reason}
    return None


class WebCall:
    """One request's function call: feed it ASGI messages, read the app's messages until its result."""

    def __init__(self, service: WebService, endpoint: Endpoint, call_id: str) -> None:
        self._s = service
        self.endpoint = endpoint
        self.call_id = call_id
        self._in_index = 0
        self.result: api_pb2.GenericResult | None = None
        self.responded = False  # the client has the whole response (or the websocket closed)

    async def send(self, msg: Message) -> None:
        self._in_index += 1
        chunk = api_pb2.DataChunk(data_format=api_pb2.DATA_FORMAT_ASGI, index=self._in_index, data=encode_message(msg))
        await self._s.calls.put_data(self.call_id, "in", [chunk])

    async def messages(self) -> AsyncIterator[Message]:
        """The app's messages in order; ends once the call has its result (see `result`)."""
        last = 0
        while True:
            with self._s.notifier.listen(data_key(self.call_id, "out"), call_key(self.call_id)) as waiter:
                chunks = await self._s.core.chunks_after(self.call_id, "out", last)
                for idx, raw in chunks:
                    last = idx
                    msg = decode_message(await self._s.chunk_bytes(api_pb2.DataChunk.FromString(raw)))
                    if msg is not None:
                        yield msg
                if not chunks:
                    outs = await self._s.core.outputs_after(self.call_id, 0, 1)
                    if outs:
                        self.result = api_pb2.GenericResult.FromString(outs[0].result)
                        return
                    await waiter.wait(_WAIT_S)

    async def cancel(self) -> None:
        """The client went away: stop the input wherever it is."""
        running = await self._s.calls.cancel(api_pb2.FunctionCallCancelRequest(function_call_id=self.call_id))
        await self._s.cancel_inputs(running, False)

    async def close(self) -> None:
        await self._s.core.drop_call_data(self.call_id)


# Stops the listed (input id, holder) inputs where they run; the scheduler's containers side does it.
CancelInputs = Callable[[list[tuple[str, str]], bool], Awaitable[None]]


class WebService:
    def __init__(
        self,
        web_store: EndpointStore,
        core: CallStore,
        apps: AppService,
        calls: CallService,
        cancel_inputs: CancelInputs,
        notifier: Notifier,
        blobs: BlobStore,
        clock: Clock,
        url_host: str,
    ) -> None:
        self.web_store = web_store
        self.core = core
        self.apps = apps
        self.calls = calls
        self.cancel_inputs = cancel_inputs
        self.notifier = notifier
        self.blobs = blobs
        self.clock = clock
        self.url_host = url_host
        self.listeners: Listeners | None = None

    def url(self, port: int) -> str:
        return f"http://{self.url_host}:{port}"

    async def start(self) -> None:
        """Reopen every persisted endpoint on its port; one whose port was taken moves to a new one."""
        assert self.listeners is not None
        for ep in await self.web_store.endpoints():
            try:
                await self.listeners.open(ep.port)
            except OSError as exc:
                port = await self.listeners.open(0)
                log.warning("web endpoint %s could not reuse port %d (%s); it moved to %d", ep.key, ep.port, exc, port)
                await self.web_store.move_endpoint(ep.key, port)

    # URL assignment (a Catalog definition hook)
    async def assign_urls(self, app_id: str, function_id: str, fn: api_pb2.Function, final: bool) -> None:
        if not fn.webhook_config.type and not any(m.webhook_config.type for m in fn.method_definitions.values()):
            return
        app = await self.apps.get(app_id)
        if fn.webhook_config.type:
            fn.web_url = await self._bind(app, function_id, "", fn.function_name, fn.webhook_config)
            fn.web_url_info.CopyFrom(api_pb2.WebUrlInfo())
        for name, method in fn.method_definitions.items():
            if method.webhook_config.type:
                method.web_url = await self._bind(app, function_id, name, method.function_name, method.webhook_config)
                method.web_url_info.CopyFrom(api_pb2.WebUrlInfo())

    async def _bind(
        self, app: AppRecord, function_id: str, method: str, name: str, config: api_pb2.WebhookConfig
    ) -> str:
        assert self.listeners is not None
        dev = app.state not in _DEPLOYED
        key = endpoint_key(app.environment, app.name or app.description, name, config.requested_suffix, dev)
        existing = await self.web_store.endpoint_by_key(key)
        port = existing.port if existing is not None else await self.listeners.open(0)
        ep = Endpoint(key, port, app.app_id, function_id, method, config.requires_proxy_auth)
        await self.web_store.put_endpoint(ep, self.clock.now())
        return self.url(port)

    # requests
    async def resolve(self, port: int) -> Endpoint:
        ep = await self.web_store.endpoint_by_port(port)
        if ep is None or not await self.apps.is_running(ep.app_id):
            raise NotFound("No running app serves this web endpoint")
        layout = await self.apps.layout(ep.app_id)
        if layout.function_ids and ep.function_id not in layout.function_ids.values():
            raise NotFound("This web endpoint is no longer part of its app")
        return ep

    async def authorized(self, key: str | None, secret: str | None) -> bool:
        if not key or not secret:
            return False
        stored = await self.web_store.token_hash(key)
        return stored is not None and secret_matches(stored, secret)

    async def open_call(self, ep: Endpoint, scope: Message) -> WebCall:
        # The container calls the web callable with `*args`: the scope travels as pickled ((scope,), {}).
        fn_input = api_pb2.FunctionInput(
            args=pickle.dumps(((scope,), {}), protocol=4),
            data_format=api_pb2.DATA_FORMAT_PICKLE,
            method_name=ep.method_name,
        )
        resp = await self.calls.map(
            api_pb2.FunctionMapRequest(
                function_id=ep.function_id,
                function_call_type=api_pb2.FUNCTION_CALL_TYPE_UNARY,
                function_call_invocation_type=api_pb2.FUNCTION_CALL_INVOCATION_TYPE_SYNC,
                pipelined_inputs=[api_pb2.FunctionPutInputsItem(idx=0, input=fn_input)],
            )
        )
        return WebCall(self, ep, resp.function_call_id)

    async def chunk_bytes(self, chunk: api_pb2.DataChunk) -> bytes:
        if chunk.data_blob_id:
            return await self.blobs.read_blob(chunk.data_blob_id)
        return bytes(chunk.data)
