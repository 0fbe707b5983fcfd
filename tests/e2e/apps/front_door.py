"""A raw ASGI app behind the web front door, for the attacks in test_front_door.py and the load runs: it echoes
what it was sent, counts body bytes, and can answer with a header value the test chooses."""

import json

import modal

app = modal.App("e2e-front-door")


async def _body(receive) -> bytes:
    out = b""
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            return out
        out += msg.get("body", b"")
        if not msg.get("more_body"):
            return out


async def _asgi(scope, receive, send) -> None:
    if scope["type"] != "http":
        return
    body = await _body(receive)
    headers = [(b"content-type", b"application/json")]
    query = dict(p.split("=", 1) for p in scope["query_string"].decode().split("&") if "=" in p)
    if scope["path"] == "/inject":
        # A header value with CR/LF in it, as a careless app might copy from its input.
        headers.append((b"x-reflected", bytes.fromhex(query["hex"])))
    payload = {
        "path": scope["path"],
        "method": scope["method"],
        "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
        "body_bytes": len(body),
    }
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": json.dumps(payload).encode()})


@app.function(max_containers=1)
@modal.concurrent(max_inputs=1000)
@modal.asgi_app()
def door():
    return _asgi
