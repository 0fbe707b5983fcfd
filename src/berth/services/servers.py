"""Modal Servers (`@app.server`, `modal.Server`): refused by name when they are defined. A Server's containers
take HTTP requests straight from Modal's routing plane (Flash: FlashContainerRegister, a `*.modal.direct` URL per
routing region, sessions), which Berth does not have; without this refusal `modal deploy` would print "Created
Server" and nothing would ever run or answer."""

from __future__ import annotations

from modal_proto import api_pb2

from berth.errors import Unimplemented

NO_SERVERS = (
    "Berth does not run Modal Servers (@app.server) yet: a Server's containers take HTTP requests straight from "
    "Modal's routing plane (Flash), which Berth does not have. Serve the same HTTP server with @modal.web_server("
    "port) on an @app.function, or an ASGI/WSGI app with @modal.asgi_app / @modal.wsgi_app: Berth serves those."
)

NO_CURL_TOKENS = (
    "Berth does not issue `modal curl` tokens: the modal CLI asks for one only for a Modal Server's *.modal.direct "
    "URL, and Berth does not run Servers. For a Berth web endpoint with requires_proxy_auth, send the Modal-Key and "
    "Modal-Secret headers of a token from `berth web-token create` (modal curl passes curl's -H options through)."
)


async def refuse_servers(app_id: str, function_id: str, fn: api_pb2.Function, final: bool) -> None:
    """A catalog hook: FunctionPrecreate and FunctionCreate of a Server fail, so deploy and run stop at once."""
    if fn.is_server:
        raise Unimplemented(NO_SERVERS)
