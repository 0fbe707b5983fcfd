"""NetworkFileSystems (Modal's SharedVolume* RPCs): named or ephemeral shared directories, one host directory
each under the data dir. Unlike a Volume there is no commit or reload: every container that mounts one binds
the same directory, so a write is visible to all of them at once. File operations are the volumes' own
(services/volume_fs.py).

That needs one filesystem under every container, so with remote workers (`berth server` + `berth worker`)
mounting one is refused by name; the files themselves stay reachable from the client (`modal nfs`)."""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import os
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TypeVar

from modal_proto import api_pb2

from berth.clock import Clock
from berth.domain.spec import BindMount
from berth.errors import FailedPrecondition, InvalidArgument
from berth.services.state_objects import NamedObjects
from berth.services.volume_fs import VolumeDir
from berth.store.ports import BlobStore, StateObjectStore
from berth.store.records import StateObject

LIST_BATCH = 100
NO_SHARED_FS = (
    "NetworkFileSystem mounts are not supported with remote workers (`berth server` + `berth worker`): "
    "a NetworkFileSystem is one directory that every container sees at once, and Berth has no filesystem "
    "shared across hosts. Use a modal.Volume (commit and reload) instead."
)

T = TypeVar("T")


async def _in_thread(fn: Callable[[], T]) -> T:
    try:
        return await asyncio.to_thread(fn)
    except (NotADirectoryError, IsADirectoryError, FileExistsError) as exc:
        raise InvalidArgument(f"NetworkFileSystem operation conflicts with an existing path: {exc.filename}") from exc


def _glob(nfs: VolumeDir, pattern: str) -> list[api_pb2.FileEntry]:
    """Entries matching a glob ('**' or '*' crossing directories, as fnmatch does), searched from the
    pattern's fixed leading directory; what `modal nfs get NAME "**"` lists."""
    pattern = pattern.lstrip("/")
    start = pattern.split("*", 1)[0].rpartition("/")[0]
    if not os.path.isdir(nfs.host(start)):
        return []
    return [e for e in nfs.listing(start, recursive=True) if fnmatch.fnmatchcase(e.path, pattern)]


class NetworkFileSystemService:
    def __init__(
        self,
        store: StateObjectStore,
        blobs: BlobStore,
        clock: Clock,
        root: Path,
        inline_limit: int,
        single_host: bool,
    ) -> None:
        self._blobs = blobs
        self._root = root
        self._tmp = root / ".tmp"
        self._tmp.mkdir(parents=True, exist_ok=True)
        self._inline_limit = inline_limit
        self._single_host = single_host
        self.objects = NamedObjects(store, clock, "nfs", "NetworkFileSystem", "sv")
        self.objects.on_delete = self._remove_files

    def directory(self, nfs_id: str) -> Path:
        return self._root / nfs_id

    async def _remove_files(self, obj: StateObject) -> None:
        await asyncio.to_thread(shutil.rmtree, self.directory(obj.object_id), True)

    async def _dir(self, nfs_id: str) -> VolumeDir:
        await self.objects.require(nfs_id)
        path = self.directory(nfs_id)
        path.mkdir(parents=True, exist_ok=True)
        return VolumeDir(path, self._tmp)

    async def get_or_create(self, req: api_pb2.SharedVolumeGetOrCreateRequest) -> str:
        obj, created = await self.objects.resolve(
            req.deployment_name, req.environment_name, req.object_creation_type, app_id=req.app_id
        )
        if created:
            self.directory(obj.object_id).mkdir(parents=True, exist_ok=True)
        return obj.object_id

    async def list_named(self, environment: str) -> list[api_pb2.SharedVolumeListItem]:
        pagination = api_pb2.ListPagination(max_objects=1000)
        return [
            api_pb2.SharedVolumeListItem(label=o.name or "", shared_volume_id=o.object_id, created_at=o.created_at)
            for o in await self.objects.named(environment, pagination)
        ]

    # containers
    def check_mountable(self, count: int) -> None:
        """Refuses NetworkFileSystem mounts where containers do not share this host's disk."""
        if count and not self._single_host:
            raise FailedPrecondition(NO_SHARED_FS)

    async def bind(self, mount: api_pb2.SharedVolumeMount) -> BindMount:
        """The shared directory itself, read-write: no copy, so every container sees every write at once."""
        self.check_mountable(1)
        nfs = await self._dir(mount.shared_volume_id)
        return BindMount(host_path=nfs.root, container_path=mount.mount_path, read_only=False)

    # files
    async def put_file(self, req: api_pb2.SharedVolumePutFileRequest) -> None:
        nfs = await self._dir(req.shared_volume_id)
        data = await self._blobs.read_blob(req.data_blob_id) if req.data_blob_id else req.data
        if req.sha256_hex and hashlib.sha256(data).hexdigest() != req.sha256_hex:
            raise InvalidArgument(f"{req.path}: the uploaded content does not match its sha256 {req.sha256_hex}")
        target = await _in_thread(lambda: nfs.check_writable(req.path, overwrite=True))
        await _in_thread(lambda: nfs.write_bytes(target, data))

    async def get_file(self, req: api_pb2.SharedVolumeGetFileRequest) -> api_pb2.SharedVolumeGetFileResponse:
        nfs = await self._dir(req.shared_volume_id)
        _, size = await _in_thread(lambda: nfs.stat_file(req.path))
        data = await _in_thread(lambda: nfs.read_range(req.path, 0, size))
        if size <= self._inline_limit:
            return api_pb2.SharedVolumeGetFileResponse(data=data)
        blob_id = self._blobs.new_blob_id()
        await self._blobs.write_blob(blob_id, data)
        return api_pb2.SharedVolumeGetFileResponse(data_blob_id=blob_id)

    async def list_files(self, nfs_id: str, path: str) -> AsyncIterator[list[api_pb2.FileEntry]]:
        nfs = await self._dir(nfs_id)
        entries = await _in_thread(lambda: _glob(nfs, path) if "*" in path else nfs.listing(path, recursive=False))
        for i in range(0, len(entries), LIST_BATCH):
            yield entries[i : i + LIST_BATCH]

    async def remove_file(self, req: api_pb2.SharedVolumeRemoveFileRequest) -> None:
        nfs = await self._dir(req.shared_volume_id)
        await _in_thread(lambda: nfs.remove(req.path, req.recursive))
