"""aiohttp application: PUT/GET /blobs/{id} (the URLs BlobCreate/BlobGet hand out), /healthz and /metrics
(Prometheus text format)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from berth.errors import BerthError, InvalidArgument, NotFound, Unavailable
from berth.http.volumes import add_volume_routes, insufficient_storage
from berth.services.volumes import VolumeService
from berth.store.blob_keys import check_blob_id
from berth.store.ports import BlobStore

MAX_BLOB_BYTES = 5 * 1024**3


def exc_status(exc: BerthError) -> int:
    if isinstance(exc, InvalidArgument):
        return 400
    return 503 if isinstance(exc, Unavailable) else 500


def build_http_app(
    blobs: BlobStore,
    volumes: VolumeService | None = None,
    metrics: Callable[[], Awaitable[bytes]] | None = None,
) -> web.Application:
    async def put_blob(request: web.Request) -> web.Response:
        blob_id = request.match_info["blob_id"]
        try:
            check_blob_id(blob_id)  # before reading a body that may be large
        except BerthError as exc:
            return web.Response(status=400, text=exc.message)
        data = await request.read()
        try:
            etag = await blobs.write_blob(blob_id, data)
        except OSError as exc:
            return insufficient_storage(exc)
        return web.Response(status=200, headers={"ETag": f'"{etag}"'})

    async def get_blob(request: web.Request) -> web.StreamResponse:
        # The body comes through this server rather than as a redirect to a presigned S3 URL: clients
        # and containers then need to reach only the server, and the bucket can stay private.
        try:
            data = await blobs.read_blob(request.match_info["blob_id"])
        except NotFound as exc:
            return web.Response(status=404, text=exc.message)
        except BerthError as exc:
            return web.Response(status=exc_status(exc), text=exc.message)
        return web.Response(body=data, content_type="application/octet-stream")

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application(client_max_size=MAX_BLOB_BYTES)
    app.router.add_put("/blobs/{blob_id}", put_blob)
    app.router.add_get("/blobs/{blob_id}", get_blob)
    app.router.add_get("/healthz", healthz)
    if volumes is not None:
        add_volume_routes(app, volumes)
    if metrics is not None:
        render = metrics

        async def scrape(request: web.Request) -> web.Response:
            return web.Response(body=await render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

        app.router.add_get("/metrics", scrape)
    return app
