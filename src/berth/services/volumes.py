"""Volumes: named or ephemeral file trees, one host directory each under the data dir. Both client
protocols write to it: v1 copies files from the mount content store, v2 assembles files from 8 MiB blocks
that the client PUTs to signed HTTP URLs. Reads (v2 and the v1 CLI both use VolumeGetFile2) are signed
range GETs. Containers see the same directory at their mount paths, so commit and reload need no copying."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import secrets
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import TypeVar
from urllib.parse import urlencode

from modal_proto import api_pb2

from berth.clock import Clock
from berth.domain.spec import BindMount
from berth.errors import InvalidArgument, PermissionDenied
from berth.services.state_objects import NamedObjects, creation_info
from berth.services.volume_fs import VolumeDir, ensure_room, relative
from berth.services.volume_heads import VolumeHeads
from berth.store.ports import BlobStore, StateObjectStore
from berth.store.records import StateObject

BLOCK_SIZE = 8 * 1024 * 1024
URL_TTL_S = 3600
# Uploaded blocks are kept for dedupe while an upload may still refer to them, then collected.
BLOCK_KEEP_S = 2 * URL_TTL_S
BLOCK_GC_EVERY_S = 600.0
LIST_BATCH = 100
V1 = api_pb2.VOLUME_FS_VERSION_V1
V2 = api_pb2.VOLUME_FS_VERSION_V2

T = TypeVar("T")


def _metadata(obj: StateObject) -> api_pb2.VolumeMetadata:
    return api_pb2.VolumeMetadata(version=obj.version, name=obj.name or "", creation_info=creation_info(obj))  # type: ignore[arg-type]


async def _in_thread(fn: Callable[[], T]) -> T:
    try:
        return await asyncio.to_thread(fn)
    except (NotADirectoryError, IsADirectoryError, FileExistsError) as exc:
        raise InvalidArgument(f"Volume operation conflicts with an existing path: {exc.filename}") from exc


class VolumeService:
    def __init__(
        self,
        store: StateObjectStore,
        blobs: BlobStore,
        clock: Clock,
        root: Path,
        inline_limit: int,
        heads: VolumeHeads | None = None,
    ) -> None:
        self._store = store
        self._blobs = blobs
        self._clock = clock
        self._root = root
        self._tmp = root / ".tmp"
        self._blocks = root / ".blocks"
        self._tmp.mkdir(parents=True, exist_ok=True)
        self._blocks.mkdir(parents=True, exist_ok=True)
        self._inline_limit = inline_limit
        # Signs block URLs; URLs handed out before a restart stop working, and clients ask again.
        self._url_key = secrets.token_bytes(32)
        self._last_block_gc = 0.0
        self.objects = NamedObjects(store, clock, "volume", "Volume", "vo")
        self.objects.on_delete = self._remove_files
        # A shared control plane (remote workers, replicas): the directories are caches of each volume's head.
        self.heads = heads
        # Asks the worker of a container to commit or reload its copy of a volume (set with remote workers).
        self.task_volume: Callable[[str, str, str], Awaitable[None]] | None = None

    # objects
    def directory(self, volume_id: str) -> Path:
        return self._root / volume_id

    async def _remove_files(self, obj: StateObject) -> None:
        if self.heads is not None:
            self.heads.forget(obj.object_id)
        await asyncio.to_thread(shutil.rmtree, self.directory(obj.object_id), True)

    def _writing(self, volume_id: str) -> contextlib.AbstractAsyncContextManager[None]:
        if self.heads is None:
            return contextlib.nullcontext()
        return self.heads.writing(volume_id, self.directory(volume_id))

    async def _dir(self, volume_id: str) -> VolumeDir:
        await self.objects.require(volume_id)
        path = self.directory(volume_id)
        path.mkdir(parents=True, exist_ok=True)
        if self.heads is not None:
            await self.heads.pull(volume_id, path)
        return VolumeDir(path, self._tmp)

    async def get_or_create(self, req: api_pb2.VolumeGetOrCreateRequest) -> api_pb2.VolumeGetOrCreateResponse:
        if req.version not in (0, V1, V2):
            raise InvalidArgument(f"Unknown volume version {req.version}")
        obj, created = await self.objects.resolve(
            req.deployment_name,
            req.environment_name,
            req.object_creation_type,
            app_id=req.app_id,
            version=req.version or V1,
        )
        if created:
            self.directory(obj.object_id).mkdir(parents=True, exist_ok=True)
        md = _metadata(obj)
        return api_pb2.VolumeGetOrCreateResponse(volume_id=obj.object_id, version=md.version, metadata=md)

    async def get_by_id(self, volume_id: str) -> api_pb2.VolumeGetByIdResponse:
        obj = await self.objects.require(volume_id)
        return api_pb2.VolumeGetByIdResponse(volume_id=volume_id, metadata=_metadata(obj))

    async def list_volumes(self, req: api_pb2.VolumeListRequest) -> api_pb2.VolumeListResponse:
        items = [
            api_pb2.VolumeListItem(
                label=o.name or "", volume_id=o.object_id, created_at=o.created_at, metadata=_metadata(o)
            )
            for o in await self.objects.named(req.environment_name, req.pagination)
        ]
        return api_pb2.VolumeListResponse(items=items, environment_name=req.environment_name)

    async def layout_object(self, volume_id: str) -> api_pb2.Object:
        obj = await self.objects.require(volume_id)
        return api_pb2.Object(object_id=volume_id, volume_metadata=_metadata(obj))

    async def bind(self, mount: api_pb2.VolumeMount) -> BindMount:
        """Where a container's volume mount comes from on the host (its sub-path, if it names one)."""
        vol = await self._dir(mount.volume_id)
        sub = relative(mount.sub_path)
        host = vol.host(sub)
        if sub != PurePosixPath(".") and not host.is_dir():
            if os.path.lexists(host):
                raise InvalidArgument(f"Volume sub_path {mount.sub_path!r} is not a directory")
            host.mkdir(parents=True)
        bind = BindMount(host_path=host, container_path=mount.mount_path, read_only=mount.read_only)
        if self.heads is not None:  # a remote worker mounts its own copy of the volume's head
            bind = replace(bind, volume_id=mount.volume_id, sub_path=sub.as_posix())
        return bind

    # listing and reads
    async def list_files(self, volume_id: str, path: str, recursive: bool) -> AsyncIterator[list[api_pb2.FileEntry]]:
        vol = await self._dir(volume_id)
        entries = await _in_thread(lambda: vol.listing(path, recursive))
        for i in range(0, len(entries), LIST_BATCH):
            yield entries[i : i + LIST_BATCH]

    async def get_file2(self, req: api_pb2.VolumeGetFile2Request, base_url: str) -> api_pb2.VolumeGetFile2Response:
        vol = await self._dir(req.volume_id)
        path = relative(req.path).as_posix()
        _, size = await _in_thread(lambda: vol.stat_file(path))
        start = min(req.start, size)
        length = size - start if not req.len else min(req.len, size - start)
        urls = []
        pos, end = start, start + length
        while pos < end:
            block_end = min(end, (pos // BLOCK_SIZE + 1) * BLOCK_SIZE)
            urls.append(self._read_url(base_url, req.volume_id, path, pos, block_end - pos))
            pos = block_end
        return api_pb2.VolumeGetFile2Response(get_urls=urls, size=size, start=start, len=length)

    async def get_file(self, req: api_pb2.VolumeGetFileRequest) -> api_pb2.VolumeGetFileResponse:
        vol = await self._dir(req.volume_id)
        _, size = await _in_thread(lambda: vol.stat_file(req.path))
        start = min(req.start, size)
        length = size - start if not req.len else min(req.len, size - start)
        data = await _in_thread(lambda: vol.read_range(req.path, start, length))
        reply = api_pb2.VolumeGetFileResponse(size=size, start=start, len=length)
        if length <= self._inline_limit:
            reply.data = data
        else:
            blob_id = self._blobs.new_blob_id()
            await self._blobs.write_blob(blob_id, data)
            reply.data_blob_id = blob_id
        return reply

    # writes
    async def put_files(self, req: api_pb2.VolumePutFilesRequest) -> None:
        """v1: files whose content the client already uploaded to the mount content store."""
        vol = await self._dir(req.volume_id)
        plan = []
        overwrite = not req.disallow_overwrite_existing_files
        for f in req.files:
            if not await self._blobs.has_file(f.sha256_hex):
                raise InvalidArgument(f"{f.filename}: content {f.sha256_hex} was not uploaded")
            target = await _in_thread(lambda f=f: vol.check_writable(f.filename, overwrite))  # type: ignore[misc]
            plan.append((target, await self._blobs.local_file(f.sha256_hex), f.mode))
        async with self._writing(req.volume_id):
            for target, source, mode in plan:
                await _in_thread(lambda t=target, s=source, m=mode: vol.write_from(t, [s], m))  # type: ignore[misc]

    async def put_files2(self, req: api_pb2.VolumePutFiles2Request, base_url: str) -> api_pb2.VolumePutFiles2Response:
        """v2: answers the blocks still missing; once there are none, assembles the files."""
        vol = await self._dir(req.volume_id)
        overwrite = not req.disallow_overwrite_existing_files
        targets = []
        missing = []
        for fi, f in enumerate(req.files):
            targets.append(await _in_thread(lambda f=f: vol.check_writable(f.path, overwrite)))  # type: ignore[misc]
            for bi, block in enumerate(f.blocks):
                if len(block.contents_sha256) != 32:
                    raise InvalidArgument(f"{f.path}: block {bi} has no valid sha256")
                path = self.block_path(block.contents_sha256.hex())
                if path.exists():
                    path.touch()  # in use again: keep it until this upload is done
                else:
                    put_url = self._put_url(base_url, block.contents_sha256.hex())
                    missing.append(
                        api_pb2.VolumePutFiles2Response.MissingBlock(file_index=fi, block_index=bi, put_url=put_url)
                    )
        # The blocks still to come, then the files assembled from them.
        need = sum(f.size for f in req.files) * (2 if missing else 1)
        await _in_thread(lambda: ensure_room(vol.root, need))
        if missing:
            return api_pb2.VolumePutFiles2Response(missing_blocks=missing)
        async with self._writing(req.volume_id):
            for f, target in zip(req.files, targets, strict=True):
                sources = [self.block_path(b.contents_sha256.hex()) for b in f.blocks]
                await _in_thread(lambda t=target, s=sources, m=f.mode: vol.write_from(t, s, m))  # type: ignore[misc]
                if target.stat().st_size != f.size:
                    target.unlink()
                    raise InvalidArgument(f"{f.path}: blocks add up to a size other than the declared {f.size} bytes")
        await self._collect_blocks()
        return api_pb2.VolumePutFiles2Response()

    async def _collect_blocks(self) -> None:
        """Removes uploaded blocks nobody touched for BLOCK_KEEP_S: their files were assembled long ago."""
        now = time.time()
        if now - self._last_block_gc < BLOCK_GC_EVERY_S:
            return
        self._last_block_gc = now

        def collect() -> None:
            for entry in os.scandir(self._blocks):
                if entry.stat().st_mtime < now - BLOCK_KEEP_S:
                    Path(entry.path).unlink(missing_ok=True)

        await asyncio.to_thread(collect)

    async def remove(self, volume_id: str, path: str, recursive: bool) -> None:
        vol = await self._dir(volume_id)
        async with self._writing(volume_id):
            await _in_thread(lambda: vol.remove(path, recursive))

    async def copy(self, volume_id: str, src_paths: list[str], dst_path: str, recursive: bool) -> None:
        vol = await self._dir(volume_id)
        async with self._writing(volume_id):
            await _in_thread(lambda: vol.copy(src_paths, dst_path, recursive))

    async def commit(self, volume_id: str, task_id: str | None = None) -> api_pb2.VolumeCommitResponse:
        # On one host containers write straight into the volume's directory: a commit has nothing left to
        # publish and other containers see the files without reloading. A container on a remote worker
        # has its worker publish its copy.
        await self.objects.require(volume_id)
        if self.heads is not None and task_id and self.task_volume is not None:
            await self.task_volume(task_id, volume_id, "commit")
            return api_pb2.VolumeCommitResponse(skip_reload=False)
        return api_pb2.VolumeCommitResponse(skip_reload=True)

    async def reload(self, volume_id: str, task_id: str | None = None) -> None:
        await self.objects.require(volume_id)
        if self.heads is not None and task_id and self.task_volume is not None:
            await self.task_volume(task_id, volume_id, "reload")

    # blocks and signed URLs
    def block_path(self, sha256_hex: str) -> Path:
        if len(sha256_hex) != 64 or any(c not in "0123456789abcdef" for c in sha256_hex):
            raise InvalidArgument(f"Invalid block hash {sha256_hex!r}")
        return self._blocks / sha256_hex

    def _sign(self, *parts: str) -> str:
        return hmac.new(self._url_key, "\0".join(parts).encode(), hashlib.sha256).hexdigest()

    def _check(self, sig: str, expires: str, *parts: str) -> None:
        if not hmac.compare_digest(sig, self._sign(*parts, expires)):
            raise PermissionDenied("Volume URL signature is not valid")
        if not expires.isdigit() or int(expires) < time.time():
            raise PermissionDenied("Volume URL has expired; request the file again")

    def _put_url(self, base_url: str, sha256_hex: str) -> str:
        expires = str(int(time.time()) + URL_TTL_S)
        query = urlencode({"expires": expires, "sig": self._sign("put", sha256_hex, expires)})
        return f"{base_url}/volume-blocks/{sha256_hex}?{query}"

    def _read_url(self, base_url: str, volume_id: str, path: str, offset: int, length: int) -> str:
        expires = str(int(time.time()) + URL_TTL_S)
        sig = self._sign("get", volume_id, path, str(offset), str(length), expires)
        query = urlencode({"path": path, "offset": offset, "length": length, "expires": expires, "sig": sig})
        return f"{base_url}/volume-data/{volume_id}?{query}"

    async def store_block(self, sha256_hex: str, expires: str, sig: str, data: bytes) -> str:
        """HTTP PUT of one block: checks the URL and the content hash, stores it; returns the put response."""
        self._check(sig, expires, "put", sha256_hex)
        if len(data) > BLOCK_SIZE:
            raise InvalidArgument(f"Block of {len(data)} bytes exceeds the block size of {BLOCK_SIZE}")
        if hashlib.sha256(data).hexdigest() != sha256_hex:
            raise InvalidArgument("Block content does not match its sha256")
        target = self.block_path(sha256_hex)
        tmp = self._tmp / f"blk-{secrets.token_hex(8)}"
        try:
            await asyncio.to_thread(tmp.write_bytes, data)
        except OSError:
            tmp.unlink(missing_ok=True)  # a full disk keeps no partial block
            raise
        os.replace(tmp, target)
        return sha256_hex

    async def read_block(self, volume_id: str, path: str, offset: str, length: str, expires: str, sig: str) -> bytes:
        """HTTP GET of one block range of a file, as signed by get_file2."""
        self._check(sig, expires, "get", volume_id, path, offset, length)
        vol = await self._dir(volume_id)
        return await _in_thread(lambda: vol.read_range(path, int(offset), int(length)))
