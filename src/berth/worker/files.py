"""Mounted files on a worker host: where their content comes from (by sha256) and placing them into a
container's filesystem. The control plane names files by content only; a worker fetches what it lacks
before a container starts."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import ssl
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Protocol

import aiohttp

from berth.domain.spec import MountedFile

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class FileSource(Protocol):
    async def fetch(self, sha256s: Iterable[str]) -> None:
        """Make these files present on this host (FileNotFoundError for one nobody has)."""

    def path(self, sha256: str) -> Path:
        """Where a fetched file is."""


class LocalFiles:
    """The content-addressed store on this host's disk, shared with an embedded server: nothing to fetch."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, sha256: str) -> Path:
        if not _SHA256.match(sha256):
            raise ValueError(f"Invalid sha256 {sha256!r}")
        return self.root / sha256

    async def fetch(self, sha256s: Iterable[str]) -> None:
        missing = [s for s in set(sha256s) if not self.path(s).exists()]
        if missing:
            raise FileNotFoundError(f"{len(missing)} mounted file(s) missing from {self.root}, e.g. {missing[0]}")


class StoreFiles:
    """Files from the server's own blob store, on the server's host (`berth up`): each is made local by the
    store (its own file, or a copy in its cache when the store is remote)."""

    def __init__(self, local_file: Callable[[str], Awaitable[Path]]) -> None:
        self._local_file = local_file
        self._paths: dict[str, Path] = {}

    def path(self, sha256: str) -> Path:
        return self._paths[sha256]

    async def fetch(self, sha256s: Iterable[str]) -> None:
        wanted = [s for s in set(sha256s) if s not in self._paths or not self._paths[s].exists()]
        for sha, found in zip(wanted, await asyncio.gather(*map(self._local_file, wanted)), strict=True):
            self._paths[sha] = found


def place_files(files: list[MountedFile], root: Path, source: FileSource) -> None:
    """Copy mounted files to their container paths under `root`; ValueError for a path that would escape."""
    for f in files:
        parts = Path(f.remote_path).parts
        if ".." in parts or not f.remote_path.startswith("/"):
            raise ValueError(f"Refusing mount path {f.remote_path!r}")
        dest = root / Path(*parts[1:])
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source.path(f.sha256), dest)
        os.chmod(dest, f.mode & 0o7777 or 0o644)


class HttpFiles(LocalFiles):
    """Mounted files fetched from the control plane's HTTP side (`/workers/files/<sha256>`, with the
    worker's join token) into a cache on this host, checked against their hash and written atomically."""

    def __init__(self, base_url: str, token: str, cache: Path, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(cache)
        self._base = base_url.rstrip("/")
        self._tls = tls
        self._token = token
        cache.mkdir(parents=True, exist_ok=True)

    async def fetch(self, sha256s: Iterable[str]) -> None:
        missing = [s for s in set(sha256s) if not self.path(s).exists()]
        if not missing:
            return
        headers = {"Authorization": f"Bearer {self._token}"}
        async with aiohttp.ClientSession(headers=headers) as session:
            await asyncio.gather(*(self._fetch_one(session, sha) for sha in missing))

    async def _fetch_one(self, session: aiohttp.ClientSession, sha256: str) -> None:
        async with session.get(f"{self._base}/workers/files/{sha256}", ssl=self._tls or True) as resp:
            if resp.status == 404:
                raise FileNotFoundError(f"The server has no file {sha256}")
            resp.raise_for_status()
            data = await resp.read()
        if hashlib.sha256(data).hexdigest() != sha256:
            raise OSError(f"The file {sha256} arrived corrupted")
        tmp = self.root / f".{sha256}.{os.getpid()}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, self.root / sha256)
