"""Mounts, images and blobs: the objects a function depends on (secrets live in services/secrets.py)."""

from __future__ import annotations

import hashlib

from modal_proto import api_pb2

from berth.clock import Clock
from berth.errors import InvalidArgument, NotFound
from berth.ids import new_id
from berth.services.blobs import LocalBlobStore
from berth.store.sqlite import SqliteStore
from berth.worker.registry import standalone_python_unavailable

_MAX_INLINE_FILE = 64 * 1024 * 1024


def _mount_checksum(files: list[api_pb2.MountFile]) -> str:
    h = hashlib.sha256()
    for f in sorted(files, key=lambda f: f.filename):
        h.update(f"{f.filename}\0{f.sha256_hex}\0{f.mode}\n".encode())
    return h.hexdigest()


class ObjectService:
    def __init__(self, store: SqliteStore, blobs: LocalBlobStore, clock: Clock) -> None:
        self._store = store
        self._blobs = blobs
        self._clock = clock

    # mounts
    async def missing_files(self, hashes: list[str]) -> list[str]:
        return [h for h in hashes if not self._blobs.has_file(h)]

    async def put_file(self, req: api_pb2.MountPutFileRequest) -> bool:
        if req.WhichOneof("data_oneof") == "data_blob_id":
            data = self._blobs.read_blob(req.data_blob_id)
        elif req.WhichOneof("data_oneof") == "data":
            data = req.data
        else:
            return self._blobs.has_file(req.sha256_hex)
        if len(data) > _MAX_INLINE_FILE and req.WhichOneof("data_oneof") == "data":
            raise InvalidArgument("Mount file too large to send inline; upload it as a blob")
        self._blobs.put_file(req.sha256_hex, data)
        return True

    async def mount_get_or_create(self, req: api_pb2.MountGetOrCreateRequest) -> api_pb2.MountGetOrCreateResponse:
        files = list(req.files)
        for f in files:
            if not f.filename.startswith("/") or ".." in f.filename.split("/"):
                raise InvalidArgument(f"Mount file path must be absolute and normalized: {f.filename!r}")
            if not self._blobs.has_file(f.sha256_hex):
                raise InvalidArgument(f"Mount file {f.filename} was not uploaded (sha256 {f.sha256_hex})")
        checksum = _mount_checksum(files)
        key = None
        if req.deployment_name:
            key = f"{req.namespace}/{req.environment_name}/{req.deployment_name}"
            found = await self._store.object_by_key("mount", key)
            if not files and (missing := standalone_python_unavailable(req.deployment_name)):
                if found is None or not api_pb2.MountGetOrCreateRequest.FromString(found[1]).files:
                    raise NotFound(missing)  # add_python's python-build-standalone: not here, not downloadable
            if found is not None and not files:
                return self._mount_response(found[0], found[1])
        mount_id = new_id("mo")
        body = api_pb2.MountGetOrCreateRequest(files=files).SerializeToString()
        await self._store.put_object(
            "mount",
            mount_id,
            body,
            self._clock.now(),
            key=key,
            name=req.deployment_name or None,
            namespace=req.namespace,
            app_id=req.app_id or None,
        )
        return api_pb2.MountGetOrCreateResponse(
            mount_id=mount_id, handle_metadata=api_pb2.MountHandleMetadata(content_checksum_sha256_hex=checksum)
        )

    def _mount_response(self, mount_id: str, body: bytes) -> api_pb2.MountGetOrCreateResponse:
        files = list(api_pb2.MountGetOrCreateRequest.FromString(body).files)
        md = api_pb2.MountHandleMetadata(content_checksum_sha256_hex=_mount_checksum(files))
        return api_pb2.MountGetOrCreateResponse(mount_id=mount_id, handle_metadata=md)

    async def mount_files(self, mount_id: str) -> list[api_pb2.MountFile]:
        body = await self._store.get_object("mount", mount_id)
        if body is None:
            raise NotFound(f"Mount {mount_id} not found")
        return list(api_pb2.MountGetOrCreateRequest.FromString(body).files)

    async def layout_object(self, object_id: str) -> api_pb2.Object:
        if object_id.startswith("mo-"):
            body = await self._store.get_object("mount", object_id)
            if body is not None:
                return api_pb2.Object(
                    object_id=object_id, mount_handle_metadata=self._mount_response(object_id, body).handle_metadata
                )
        return api_pb2.Object(object_id=object_id)
