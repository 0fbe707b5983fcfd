"""The HTTP side's routes for remote workers: the hub's WebSocket, and the mounted files workers fetch by
sha256. Both take a join token, never a client token."""

from __future__ import annotations

from aiohttp import web

from berth.errors import BerthError, NotFound
from berth.services.join_tokens import JoinTokens
from berth.store.ports import BlobStore
from berth.workers.hub import WorkerHub


def add_worker_routes(app: web.Application, hub: WorkerHub, tokens: JoinTokens, blobs: BlobStore) -> None:
    async def get_file(request: web.Request) -> web.StreamResponse:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not token or not await tokens.verify(token):
            return web.Response(status=401, text="The join token was refused (wrong, or revoked)")
        try:
            path = await blobs.local_file(request.match_info["sha256"])
        except NotFound as exc:
            return web.Response(status=404, text=exc.message)
        except BerthError as exc:
            return web.Response(status=400, text=exc.message)
        return web.FileResponse(path)

    app.router.add_get("/workers/connect", hub.handle)
    app.router.add_get("/workers/files/{sha256}", get_file)
