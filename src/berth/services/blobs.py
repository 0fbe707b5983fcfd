"""Blobs and the content-addressed file store, on a local directory."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from berth.errors import InvalidArgument, NotFound
from berth.ids import new_id


class LocalBlobStore:
    """Blob bodies live at <root>/<blob id>; mount file contents at <root>/cas/<sha256>."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "cas").mkdir(parents=True, exist_ok=True)
        (root / "tmp").mkdir(parents=True, exist_ok=True)

    def new_blob_id(self) -> str:
        return new_id("bl")

    def blob_path(self, blob_id: str) -> Path:
        if not blob_id.startswith("bl-") or "/" in blob_id or len(blob_id) > 64:
            raise InvalidArgument(f"Invalid blob id {blob_id!r}")
        return self.root / blob_id

    def write_blob(self, blob_id: str, data: bytes) -> str:
        """Stores a blob body and returns its MD5 hex digest (the ETag clients check)."""
        self._atomic_write(self.blob_path(blob_id), data)
        return hashlib.md5(data).hexdigest()

    def require_blob(self, blob_id: str) -> Path:
        path = self.blob_path(blob_id)
        if not path.exists():
            raise NotFound(f"Blob {blob_id} not found")
        return path

    def read_blob(self, blob_id: str) -> bytes:
        path = self.blob_path(blob_id)
        if not path.exists():
            raise NotFound(f"Blob {blob_id} not found")
        return path.read_bytes()

    def cas_path(self, sha256_hex: str) -> Path:
        if len(sha256_hex) != 64 or not all(c in "0123456789abcdef" for c in sha256_hex):
            raise InvalidArgument(f"Invalid sha256 {sha256_hex!r}")
        return self.root / "cas" / sha256_hex

    def has_file(self, sha256_hex: str) -> bool:
        return self.cas_path(sha256_hex).exists()

    def put_file(self, sha256_hex: str, data: bytes) -> None:
        if hashlib.sha256(data).hexdigest() != sha256_hex:
            raise InvalidArgument(f"File content does not match its sha256 {sha256_hex}")
        self._atomic_write(self.cas_path(sha256_hex), data)

    def _atomic_write(self, path: Path, data: bytes) -> None:
        tmp = self.root / "tmp" / new_id("tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
