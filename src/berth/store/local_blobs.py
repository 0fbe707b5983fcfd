"""Blobs and the content-addressed file store on a local directory: the embedded default."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

from berth.errors import NotFound
from berth.ids import new_id
from berth.store.blob_keys import check_blob_id, check_content, check_sha256


class LocalBlobStore:
    """Blob bodies live at <root>/<blob id>; mount file contents at <root>/cas/<sha256>. Writes go to
    <root>/tmp first and are renamed into place, so a reader never sees a partial body."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "cas").mkdir(parents=True, exist_ok=True)
        (root / "tmp").mkdir(parents=True, exist_ok=True)

    @property
    def scratch_dir(self) -> Path:
        return self.root / "tmp"

    def new_blob_id(self) -> str:
        return new_id("bl")

    def _blob_path(self, blob_id: str) -> Path:
        return self.root / check_blob_id(blob_id)

    def _cas_path(self, sha256_hex: str) -> Path:
        return self.root / "cas" / check_sha256(sha256_hex)

    async def write_blob(self, blob_id: str, data: bytes) -> str:
        path = self._blob_path(blob_id)
        await asyncio.to_thread(self._atomic_write, path, data)
        return hashlib.md5(data).hexdigest()

    async def read_blob(self, blob_id: str) -> bytes:
        path = self._blob_path(blob_id)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise NotFound(f"Blob {blob_id} not found") from None

    async def has_blob(self, blob_id: str) -> bool:
        return self._blob_path(blob_id).exists()

    async def require_blob(self, blob_id: str) -> None:
        if not await self.has_blob(blob_id):
            raise NotFound(f"Blob {blob_id} not found")

    async def has_file(self, sha256_hex: str) -> bool:
        return self._cas_path(sha256_hex).exists()

    async def put_file(self, sha256_hex: str, data: bytes) -> None:
        path = self._cas_path(sha256_hex)
        await asyncio.to_thread(check_content, sha256_hex, data)
        await asyncio.to_thread(self._atomic_write, path, data)

    async def read_file(self, sha256_hex: str) -> bytes:
        path = self._cas_path(sha256_hex)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise NotFound(f"File {sha256_hex} not found") from None

    async def local_file(self, sha256_hex: str) -> Path:
        path = self._cas_path(sha256_hex)
        if not path.exists():
            raise NotFound(f"File {sha256_hex} not found")
        return path

    def _atomic_write(self, path: Path, data: bytes) -> None:
        tmp = self.root / "tmp" / new_id("tmp")
        try:
            tmp.write_bytes(data)
        except OSError:
            tmp.unlink(missing_ok=True)  # a full disk keeps no partial body
            raise
        os.replace(tmp, path)
