"""Well-formed blob ids and sha256 names, shared by every blob store. A name that is not well-formed is
InvalidArgument before it gets near a path or an object key, so no id can climb out of its directory."""

from __future__ import annotations

import hashlib
import string

from berth.errors import InvalidArgument

_ID_CHARS = frozenset(string.ascii_letters + string.digits + "-_")
_HEX = frozenset("0123456789abcdef")


def check_blob_id(blob_id: str) -> str:
    if not blob_id.startswith("bl-") or not 3 < len(blob_id) <= 64 or not _ID_CHARS.issuperset(blob_id):
        raise InvalidArgument(f"Invalid blob id {blob_id!r}")
    return blob_id


def check_sha256(sha256_hex: str) -> str:
    if len(sha256_hex) != 64 or not _HEX.issuperset(sha256_hex):
        raise InvalidArgument(f"Invalid sha256 {sha256_hex!r}")
    return sha256_hex


def check_content(sha256_hex: str, data: bytes) -> None:
    """A content-addressed file is stored only under the hash of what it holds."""
    if hashlib.sha256(data).hexdigest() != sha256_hex:
        raise InvalidArgument(f"File content does not match its sha256 {sha256_hex}")
