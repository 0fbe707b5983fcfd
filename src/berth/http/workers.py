"""The HTTP side's routes for remote workers: the hub's WebSocket, the content-addressed files workers fetch
and store by sha256 (mounted files, volume contents and manifests), and volume heads, which workers read
before mounting a volume and move when a container commits. All take a join token, never a client token."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from berth.domain.volume_manifest import Manifest
from berth.errors import BerthError, NotFound
from berth.services.join_tokens import JoinTokens
from berth.services.volume_heads import VolumeHeads
from berth.store.ports import BlobStore
from berth.workers.hub import WorkerHub

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def add_worker_routes(
    app: web.Application, hub: WorkerHub, tokens: JoinTokens, blobs: BlobStore, heads: VolumeHeads | None
) -> None:
    def joined(handler: Handler) -> Handler:
        async def checked(request: web.Request) -> web.StreamResponse:
            token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            if not token or not await tokens.verify(token):
                return web.Response(status=401, text="The join token was refused (wrong, or revoked)")
            try:
                return await handler(request)
            except NotFound as exc:
                return web.Response(status=404, text=exc.message)
            except BerthError as exc:
                return web.Response(status=400, text=exc.message)

        return checked

    async def get_file(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(await blobs.local_file(request.match_info["sha256"]))

    async def put_file(request: web.Request) -> web.StreamResponse:
        await blobs.put_file(request.match_info["sha256"], await request.read())  # checks the content's hash
        return web.Response(status=204)

    async def volume_head(request: web.Request) -> web.StreamResponse:
        assert heads is not None
        head = await heads.head(request.match_info["volume_id"])
        return web.json_response({"head": head.decode() if head is not None else None})

    async def volume_commit(request: web.Request) -> web.StreamResponse:
        """A worker's copy, started from head `base`, as the manifest it stored (by sha256) beforehand."""
        assert heads is not None
        body = await request.json()
        base = body["base"].encode() if body.get("base") is not None else None
        try:
            ours = Manifest.decode(await blobs.read_file(str(body["manifest"])))
        except (ValueError, KeyError, TypeError) as exc:
            return web.Response(status=400, text=f"Invalid manifest: {exc}")
        new = await heads.commit(request.match_info["volume_id"], base, ours)
        return web.json_response({"head": new.decode()})

    app.router.add_get("/workers/connect", hub.handle)
    app.router.add_get("/workers/files/{sha256}", joined(get_file))
    app.router.add_put("/workers/files/{sha256}", joined(put_file))
    if heads is not None:
        app.router.add_get("/workers/volumes/{volume_id}/head", joined(volume_head))
        app.router.add_post("/workers/volumes/{volume_id}/commit", joined(volume_commit))
