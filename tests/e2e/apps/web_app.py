"""Web endpoints of every kind, served by `modal serve` in the web end-to-end tests."""

import asyncio
import hashlib
import time
import urllib.request
import uuid

import modal
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import Response, StreamingResponse

# The process runtime ignores the image (its containers use the server's Python); crun builds it.
image = modal.Image.debian_slim().uv_pip_install("fastapi[standard]", "flask")
app = modal.App("e2e-web", image=image)
# Identifies the container that serves a request (pids repeat across isolated containers' namespaces).
CONTAINER = uuid.uuid4().hex


@app.function()
@modal.fastapi_endpoint(docs=True)
def hello():
    return "Hello world!"


@app.function()
@modal.fastapi_endpoint()
def greet(user: str) -> str:
    return f"Hello {user}!"


@app.function()
@modal.fastapi_endpoint(method="POST")
def echo_json(data: dict) -> dict:
    return data


@app.function()
@modal.fastapi_endpoint(label="e2e-custom-label")
def labelled() -> dict:
    return {"own_url": labelled.get_web_url()}


@app.function()
@modal.fastapi_endpoint()
def fetch(url: str) -> dict:
    """Fetches a URL from inside a container."""
    with urllib.request.urlopen(url, timeout=30) as resp:
        return {"status": resp.status, "body": resp.read().decode()}


@app.function()
@modal.fastapi_endpoint()
def boom():
    raise RuntimeError("kaboom: secret detail from the handler")


@app.function()
@modal.fastapi_endpoint(requires_proxy_auth=True)
def guarded():
    return "guarded ok"


@app.function(scaledown_window=2)
@modal.fastapi_endpoint()
def pid() -> str:
    return CONTAINER


web_app = FastAPI()


@web_app.post("/digest")
async def digest(request: Request) -> dict:
    h = hashlib.sha256()
    n = 0
    async for chunk in request.stream():
        h.update(chunk)
        n += len(chunk)
    return {"bytes": n, "sha256": h.hexdigest()}


@web_app.get("/big")
async def big(n: int) -> Response:
    return Response(bytes(i % 251 for i in range(256)) * (n // 256), media_type="application/octet-stream")


@web_app.get("/sse")
async def sse() -> StreamingResponse:
    async def events():
        for i in range(5):
            yield f"data: event {i} at {time.time()}\n\n"
            await asyncio.sleep(0.5)

    return StreamingResponse(events(), media_type="text/event-stream")


@web_app.get("/endless")
async def endless(tag: str) -> StreamingResponse:
    async def ticks():
        try:
            i = 0
            while True:
                yield f"tick {i}\n"
                i += 1
                await asyncio.sleep(0.2)
        finally:
            print(f"endless stream {tag} stopped", flush=True)

    return StreamingResponse(ticks(), media_type="text/plain")


@web_app.get("/overlap")
async def overlap() -> dict:
    start = time.time()
    await asyncio.sleep(1.5)
    return {"pid": CONTAINER, "start": start, "end": time.time()}


@web_app.websocket("/ws")
async def ws_echo(websocket: WebSocket) -> None:
    await websocket.accept()
    while True:
        text = await websocket.receive_text()
        if text == "bye":
            await websocket.close(code=1000)
            return
        await websocket.send_text(f"echo: {text}")


@app.function()
@modal.concurrent(max_inputs=10)
@modal.asgi_app()
def api():
    return web_app


@app.function()
@modal.wsgi_app()
def flask_app():
    from flask import Flask, request

    flask = Flask(__name__)

    @flask.get("/")
    def home():
        return "Hello Flask World!"

    @flask.post("/foo")
    def foo():
        return request.json

    return flask


@app.cls()
class Greeter:
    @modal.enter()
    def start(self):
        self.started = time.time()

    @modal.fastapi_endpoint()
    def web(self) -> dict:
        return {"started": self.started, "now": time.time()}
