"""Sandbox.snapshot_filesystem() on a remote worker: the packed layer goes to the control plane's blob store
(`PUT /workers/files/<sha256>`, as volume contents do), and the control plane publishes the image
(`POST /workers/snapshots`); any worker then builds it from the layer, as it builds a snapshot taken on the
server's own worker."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from berth.errors import FailedPrecondition, NotFound


class RemoteSnapshots:
    def __init__(self, base_url: str, token: str) -> None:
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}

    async def __call__(self, base_image_id: str, archive: Path, sha256: str) -> str:
        async with aiohttp.ClientSession(headers=self._headers) as session:
            with archive.open("rb") as layer:
                async with session.put(f"{self._base}/workers/files/{sha256}", data=layer) as resp:
                    await _check(resp, "upload the snapshot's layer")
            body = {"base_image_id": base_image_id, "layer": sha256}
            async with session.post(f"{self._base}/workers/snapshots", json=body) as resp:
                await _check(resp, "publish the snapshot")
                return str((await resp.json())["image_id"])


async def _check(resp: aiohttp.ClientResponse, what: str) -> None:
    if resp.status == 404:
        raise NotFound(await resp.text())
    if resp.status >= 400:
        raise FailedPrecondition(f"The worker could not {what} on the control plane: {resp.status} {await resp.text()}")
