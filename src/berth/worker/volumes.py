"""Volumes on a remote worker: one directory per volume on this host, shared by every container here that
mounts it, and kept as a copy of the volume's head on the control plane (domain/volume_manifest.py).

- Before a container starts, the copy is brought up to the head: what others committed is laid over it,
  and what containers here wrote and did not commit yet stays.
- A commit (a container's `Volume.commit()`, or a container with the volume mounted writable exiting)
  stores the files that changed and a manifest of the copy in the blob store, through the server's worker
  routes, and has the server merge it over the head; the copy then takes in what others committed.
- A reload commits, then brings the copy up to the head, as Modal's reload may commit implicitly.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp

from berth.domain.spec import BindMount
from berth.domain.volume_manifest import Head, Manifest, StatCache, apply, merge, scan
from berth.worker.files import HttpFiles

log = logging.getLogger("berth.worker.volumes")


class VolumeCopies:
    def __init__(self, base_url: str, token: str, root: Path, files: HttpFiles) -> None:
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}
        self._root = root
        self._files = files
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._held: dict[str, tuple[str | None, Manifest]] = {}  # the head each copy was last brought to
        self._stats: defaultdict[str, StatCache] = defaultdict(dict)
        self._writers: dict[str, set[str]] = {}  # task id -> volumes it mounts writable
        self._mounted: dict[str, set[str]] = {}  # task id -> every volume it mounts

    def directory(self, volume_id: str) -> Path:
        if not volume_id.replace("-", "").isalnum():
            raise ValueError(f"Invalid volume id {volume_id!r}")
        return self._root / volume_id

    async def mount(self, task_id: str, bind: BindMount) -> BindMount:
        """The bind a container on this host gets: the volume's copy here, up to date."""
        async with self._locks[bind.volume_id]:
            await self._pull(bind.volume_id)
        host = self.directory(bind.volume_id) / bind.sub_path
        host.mkdir(parents=True, exist_ok=True)
        self._mounted.setdefault(task_id, set()).add(bind.volume_id)
        if not bind.read_only:
            self._writers.setdefault(task_id, set()).add(bind.volume_id)
        return replace(bind, host_path=host)

    async def act(self, volume_id: str, action: str) -> None:
        if action not in ("commit", "reload"):
            raise ValueError(f"unknown volume action {action!r}")
        async with self._locks[volume_id]:
            await self._commit(volume_id)  # a reload commits first, and a commit takes in others' commits

    async def reload_task(self, task_id: str) -> None:
        """`Sandbox.reload_volumes()`: every volume the task mounts."""
        for volume_id in sorted(self._mounted.get(task_id, ())):
            await self.act(volume_id, "reload")

    async def release(self, task_id: str) -> None:
        """A container exited: commit the volumes it could write (Modal commits at container exit)."""
        self._mounted.pop(task_id, None)
        for volume_id in sorted(self._writers.pop(task_id, ())):
            try:
                await self.act(volume_id, "commit")
            except Exception as exc:
                log.warning("could not commit volume %s after task %s exited: %s", volume_id, task_id, exc)

    # the server's worker routes
    async def _request(self, method: str, path: str, **kw: Any) -> Any:
        async with (
            aiohttp.ClientSession(headers=self._headers) as session,
            session.request(method, f"{self._base}{path}", **kw) as resp,
        ):
            if resp.status >= 400:
                raise OSError(f"{method} {path}: {resp.status} {await resp.text()}")
            return await resp.json() if resp.content_type == "application/json" else None

    async def _head(self, volume_id: str) -> str | None:
        body = await self._request("GET", f"/workers/volumes/{volume_id}/head")
        return body["head"]  # type: ignore[no-any-return]

    async def _manifest(self, head: str | None) -> Manifest:
        sha = Head.decode(head.encode() if head else None).manifest
        if not sha:
            return Manifest()
        await self._files.fetch([sha])
        return Manifest.decode(self._files.path(sha).read_bytes())

    async def _bring_to(self, volume_id: str, head: str | None, theirs: Manifest) -> None:
        """Lay `theirs` over the copy, keeping what containers here changed since the last head."""
        path = self.directory(volume_id)
        path.mkdir(parents=True, exist_ok=True)
        _, base = self._held.get(volume_id) or (None, Manifest())
        stats = self._stats[volume_id]
        local = await asyncio.to_thread(scan, path, stats)
        target = merge(base, local, theirs)
        await self._files.fetch({f.sha256 for f in target.files.values()} - {f.sha256 for f in local.files.values()})
        await asyncio.to_thread(apply, path, target, stats, self._content(path, local))
        self._held[volume_id] = (head, theirs)

    def _content(self, path: Path, local: Manifest) -> Any:
        by_sha = {f.sha256: path / rel for rel, f in local.files.items()}
        return lambda sha: self._files.path(sha) if self._files.path(sha).exists() else by_sha[sha]

    async def _pull(self, volume_id: str) -> None:
        head = await self._head(volume_id)
        held = self._held.get(volume_id)
        if held is not None and held[0] == head and self.directory(volume_id).is_dir():
            return
        await self._bring_to(volume_id, head, await self._manifest(head))

    async def _commit(self, volume_id: str) -> None:
        path = self.directory(volume_id)
        if volume_id not in self._held:
            await self._pull(volume_id)
        base_head, base = self._held[volume_id]
        ours = await asyncio.to_thread(scan, path, self._stats[volume_id])
        if ours != base:
            changed = {f.sha256: rel for rel, f in ours.files.items() if base.files.get(rel) != f}
            for sha, rel in changed.items():
                data = await asyncio.to_thread((path / rel).read_bytes)
                await self._request("PUT", f"/workers/files/{sha}", data=data)
            encoded = ours.encode()
            await self._request("PUT", f"/workers/files/{ours.sha256()}", data=encoded)
            reply = await self._request(
                "POST", f"/workers/volumes/{volume_id}/commit", json={"base": base_head, "manifest": ours.sha256()}
            )
            # The copy holds `ours`, which the new head contains; bring it to the head from there.
            self._held[volume_id] = (base_head, ours)
            head = reply["head"]
            await self._bring_to(volume_id, head, await self._manifest(head))
        else:
            await self._pull(volume_id)
