"""aiohttp application: PUT/GET /blobs/{id} (the URLs BlobCreate/BlobGet hand out) and /healthz."""

from __future__ import annotations

from aiohttp import web

from berth.errors import BerthError, NotFound
from berth.http.volumes import add_volume_routes
from berth.services.blobs import LocalBlobStore
from berth.services.volumes import VolumeService

MAX_BLOB_BYTES = 5 * 1024**3


def build_http_app(blobs: LocalBlobStore, volumes: VolumeService | None = None) -> web.Application:
    async def put_blob(request: web.Request) -> web.Response:
        blob_id = request.match_info["blob_id"]
        try:
            blobs.blob_path(blob_id)
        except BerthError as exc:
            return web.Response(status=400, text=exc.message)
        data = await request.read()
        etag = blobs.write_blob(blob_id, data)
        return web.Response(status=200, headers={"ETag": f'"{etag}"'})

    async def get_blob(request: web.Request) -> web.StreamResponse:
        try:
            path = blobs.require_blob(request.match_info["blob_id"])
        except NotFound as exc:
            return web.Response(status=404, text=exc.message)
        except BerthError as exc:
            return web.Response(status=400, text=exc.message)
        return web.FileResponse(path)

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application(client_max_size=MAX_BLOB_BYTES)
    app.router.add_put("/blobs/{blob_id}", put_blob)
    app.router.add_get("/blobs/{blob_id}", get_blob)
    app.router.add_get("/healthz", healthz)
    if volumes is not None:
        add_volume_routes(app, volumes)
    return app
