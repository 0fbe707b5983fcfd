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
# A sandbox's filesystem snapshot, as its packed layer (stored by sha256 beforehand) over its image: the new
# image's id (ImageService.register_snapshot_layer).
SnapshotLayers = Callable[[str, str], Awaitable[str]]


def _joined(tokens: JoinTokens) -> Callable[[Handler], Handler]:
    """Routes only a worker with a valid join token may use; Berth's errors become 404 and 400."""

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

    return joined


def add_worker_routes(
    app: web.Application,
    hub: WorkerHub,
    tokens: JoinTokens,
    blobs: BlobStore,
    heads: VolumeHeads | None,
    snapshots: SnapshotLayers | None = None,
) -> None:
    joined = _joined(tokens)

    async def get_file(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(await blobs.local_file(request.match_info["sha256"]))

    async def put_file(request: web.Request) -> web.StreamResponse:
        await blobs.put_file(request.match_info["sha256"], await request.read())  # checks the content's hash
        return web.Response(status=204)

    app.router.add_get("/workers/connect", hub.handle)
    app.router.add_get("/workers/files/{sha256}", joined(get_file))
    app.router.add_put("/workers/files/{sha256}", joined(put_file))
    if heads is not None:
        _add_volume_routes(app, joined, blobs, heads)
    if snapshots is not None:
        _add_snapshot_route(app, joined, snapshots)


def _add_volume_routes(
    app: web.Application, joined: Callable[[Handler], Handler], blobs: BlobStore, heads: VolumeHeads
) -> None:
    async def volume_head(request: web.Request) -> web.StreamResponse:
        head = await heads.head(request.match_info["volume_id"])
        return web.json_response({"head": head.decode() if head is not None else None})

    async def volume_commit(request: web.Request) -> web.StreamResponse:
        """A worker's copy, started from head `base`, as the manifest it stored (by sha256) beforehand."""
        body = await request.json()
        base = body["base"].encode() if body.get("base") is not None else None
        try:
            ours = Manifest.decode(await blobs.read_file(str(body["manifest"])))
        except (ValueError, KeyError, TypeError) as exc:
            return web.Response(status=400, text=f"Invalid manifest: {exc}")
        new = await heads.commit(request.match_info["volume_id"], base, ours)
        return web.json_response({"head": new.decode()})

    app.router.add_get("/workers/volumes/{volume_id}/head", joined(volume_head))
    app.router.add_post("/workers/volumes/{volume_id}/commit", joined(volume_commit))


def _add_snapshot_route(app: web.Application, joined: Callable[[Handler], Handler], snapshots: SnapshotLayers) -> None:
    async def snapshot(request: web.Request) -> web.StreamResponse:
        """Sandbox.snapshot_filesystem() on a remote worker: the layer it stored, published as an image."""
        try:
            body = await request.json()
            base_image_id, layer = str(body["base_image_id"]), str(body["layer"])
        except (ValueError, KeyError, TypeError) as exc:
            return web.Response(status=400, text=f"Invalid snapshot request: {exc}")
        return web.json_response({"image_id": await snapshots(base_image_id, layer)})

    app.router.add_post("/workers/snapshots", joined(snapshot))
