"""The HTTP side's routes for remote workers: the hub's WebSocket, and the mounted files workers fetch by
sha256. Both take a join token, never a client token."""

from __future__ import annotations

from aiohttp import web

from berth.errors import BerthError
from berth.services.blobs import LocalBlobStore
from berth.services.join_tokens import JoinTokens
from berth.workers.hub import WorkerHub


def add_worker_routes(app: web.Application, hub: WorkerHub, tokens: JoinTokens, blobs: LocalBlobStore) -> None:
    async def get_file(request: web.Request) -> web.StreamResponse:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not token or not await tokens.verify(token):
            return web.Response(status=401, text="The join token was refused (wrong, or revoked)")
        try:
            path = blobs.cas_path(request.match_info["sha256"])
        except BerthError as exc:
            return web.Response(status=400, text=exc.message)
        if not path.exists():
            return web.Response(status=404, text="No such file")
        return web.FileResponse(path)

    app.router.add_get("/workers/connect", hub.handle)
    app.router.add_get("/workers/files/{sha256}", get_file)
