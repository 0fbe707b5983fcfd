"""Volumes on a shared control plane (`berth server`: remote workers, several replicas). A volume's content is
its head, a versioned pointer to a manifest (domain/volume_manifest.py) kept in the volume's state-object
body and moved only by compare-and-set; file contents and manifests are content-addressed files in the blob
store. Each replica's directory for a volume is a cache it brings up to the head before serving a request,
and publishes to after changing it. Workers do the same with their own caches through the worker routes
(http/workers.py); their commits arrive here as a manifest over the one they started from."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

from berth.domain.volume_manifest import Head, Manifest, StatCache, apply, merge, scan
from berth.errors import NotFound
from berth.store.ports import BlobStore, StateObjectStore

_MAX_RACES = 50


class VolumeHeads:
    def __init__(self, store: StateObjectStore, blobs: BlobStore) -> None:
        self._store = store
        self._blobs = blobs
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._held: dict[str, tuple[bytes | None, Manifest]] = {}  # what each local directory holds
        self._stats: defaultdict[str, StatCache] = defaultdict(dict)

    async def head(self, volume_id: str) -> bytes | None:
        obj = await self._store.get("volume", volume_id)
        if obj is None:
            raise NotFound(f"Volume {volume_id} not found")
        return obj.body

    async def manifest(self, head: Head) -> Manifest:
        if not head.manifest:
            return Manifest()
        return Manifest.decode(await self._blobs.read_file(head.manifest))

    async def store_manifest(self, manifest: Manifest) -> str:
        sha = manifest.sha256()
        if not await self._blobs.has_file(sha):
            await self._blobs.put_file(sha, manifest.encode())
        return sha

    async def commit(self, volume_id: str, base: bytes | None, ours: Manifest) -> bytes:
        """Publishes `ours`, a copy's content that started from head `base`, merged over whatever was
        committed since; returns the new head. Every file `ours` names must be in the blob store."""
        base_manifest = await self.manifest(Head.decode(base))
        for _ in range(_MAX_RACES):
            current = await self.head(volume_id)
            head = Head.decode(current)
            result = ours if current == base else merge(base_manifest, ours, await self.manifest(head))
            new = Head(head.version + 1, await self.store_manifest(result)).encode()
            if await self._store.set_body_if(volume_id, current, new):
                return new
        raise RuntimeError(f"Volume {volume_id}: gave up committing after {_MAX_RACES} concurrent commits won")

    # this replica's own directory
    async def pull(self, volume_id: str, path: Path) -> None:
        """Brings `path` up to the volume's head, unless it holds it already."""
        async with self._locks[volume_id]:
            await self._pull(volume_id, path)

    @contextlib.asynccontextmanager
    async def writing(self, volume_id: str, path: Path) -> AsyncIterator[None]:
        """Up to date before the body changes `path`, published after; no pull of another request can
        undo its changes in between."""
        async with self._locks[volume_id]:
            await self._pull(volume_id, path)
            try:
                yield
            finally:
                await self._push(volume_id, path)

    async def _pull(self, volume_id: str, path: Path) -> None:
        current = await self.head(volume_id)
        held = self._held.get(volume_id)
        if held is not None and held[0] == current and path.is_dir():
            return
        target = await self.manifest(Head.decode(current))
        contents = {sha: await self._blobs.local_file(sha) for sha in {f.sha256 for f in target.files.values()}}
        path.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(apply, path, target, self._stats[volume_id], contents.__getitem__)
        self._held[volume_id] = (current, target)

    async def _push(self, volume_id: str, path: Path) -> None:
        base, base_manifest = self._held.get(volume_id) or (None, Manifest())
        ours = await asyncio.to_thread(scan, path, self._stats[volume_id])
        if ours == base_manifest:
            return
        for rel, item in ours.files.items():
            if base_manifest.files.get(rel) != item and not await self._blobs.has_file(item.sha256):
                data = await asyncio.to_thread((path / rel).read_bytes)
                await self._blobs.put_file(item.sha256, data)
        new = await self.commit(volume_id, base, ours)
        self._held[volume_id] = (new, ours)
        if Head.decode(new).version != Head.decode(base).version + 1:
            self._held.pop(volume_id)  # others committed meanwhile: the next pull brings their files

    def forget(self, volume_id: str) -> None:
        self._held.pop(volume_id, None)
        self._stats.pop(volume_id, None)
