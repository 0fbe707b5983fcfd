"""HTTP side of volume v2 transfers: PUT /volume-blocks/{sha256} stores one uploaded block, GET
/volume-data/{volume_id} returns one block range of a file. Both URLs are signed by VolumePutFiles2 and
VolumeGetFile2 (berth.services.volumes), which check them."""

from __future__ import annotations

from aiohttp import web

from berth.errors import BerthError, DiskFull, InvalidArgument, NotFound, PermissionDenied, disk_full
from berth.services.volumes import BLOCK_SIZE, VolumeService

_STATUS = {NotFound: 404, PermissionDenied: 403, InvalidArgument: 400, DiskFull: 507}


def insufficient_storage(exc: BaseException) -> web.Response:
    """507 for a write the full data disk refused; re-raises anything else."""
    full = disk_full(exc)
    if full is None:
        raise exc
    return web.Response(status=507, text=full.message)


def _error(exc: BerthError) -> web.Response:
    return web.Response(status=_STATUS.get(type(exc), 500), text=exc.message)


def add_volume_routes(app: web.Application, volumes: VolumeService) -> None:
    async def put_block(request: web.Request) -> web.Response:
        q = request.query
        if request.content_length is not None and request.content_length > BLOCK_SIZE:
            return web.Response(status=413, text=f"A block is at most {BLOCK_SIZE} bytes")
        data = await request.read()
        try:
            body = await volumes.store_block(request.match_info["sha256"], q.get("expires", ""), q.get("sig", ""), data)
        except BerthError as exc:
            return _error(exc)
        except OSError as exc:
            return insufficient_storage(exc)
        return web.Response(status=200, body=body.encode())

    async def get_block(request: web.Request) -> web.Response:
        q = request.query
        try:
            data = await volumes.read_block(
                request.match_info["volume_id"],
                q.get("path", ""),
                q.get("offset", ""),
                q.get("length", ""),
                q.get("expires", ""),
                q.get("sig", ""),
            )
        except BerthError as exc:
            return _error(exc)
        return web.Response(status=200, body=data, content_type="application/octet-stream")

    app.router.add_put("/volume-blocks/{sha256}", put_block)
    app.router.add_get("/volume-data/{volume_id}", get_block)
