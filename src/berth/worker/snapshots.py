"""Filesystem snapshots of a running sandbox, as one image layer: the writable (upper) layer of the sandbox's
overlay, packed into a tar archive that travels through the blob store like any other content-addressed
file, and unpacked on a worker as a layer on top of the sandbox's own image.

The upper layer is overlayfs's own record of the changes: new and changed files as they are, a deleted file
as a whiteout (a 0:0 character device) and a directory whose old contents are gone as an "opaque" directory
(the `trusted.overlay.opaque` attribute). Unpacked as a lower layer, overlayfs reads the same marks, so the
image shows exactly what the sandbox saw. tar keeps no extended attributes here, so opaque directories are
carried in a PAX header of their own.

A user-namespaced sandbox (see userns.py) writes its files as host uid HOST_BASE + n; the layer is stored
with the ids the sandbox saw (n), as image layers are, so it serves sandboxes and functions alike."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tarfile
from pathlib import Path

OPAQUE_XATTR = "trusted.overlay.opaque"
_OPAQUE_PAX = "BERTH.overlay.opaque"
# Written into each container's root by the worker when it starts: never part of what the sandbox changed.
_SKIP = frozenset({"etc/hosts"})


def _shifted(value: int, shift: int) -> int:
    return value - shift if shift and shift <= value < shift + 65_536 else value


def pack_upper(upper: Path, archive: Path, id_shift: int = 0) -> str:
    """Write the changes recorded in `upper` to a tar archive at `archive`; returns its sha256."""

    def adjust(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        if info.name in _SKIP:
            return None
        info.uid, info.gid = _shifted(info.uid, id_shift), _shifted(info.gid, id_shift)
        info.uname = info.gname = ""
        if info.isdir():
            with contextlib.suppress(OSError):
                if os.getxattr(upper / info.name, OPAQUE_XATTR, follow_symlinks=False) == b"y":
                    info.pax_headers = {**info.pax_headers, _OPAQUE_PAX: "y"}
        return info

    with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tar:
        for entry in sorted(os.listdir(upper)):
            tar.add(upper / entry, arcname=entry, recursive=True, filter=adjust)
    digest = hashlib.sha256()
    with open(archive, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def unpack_layer(archive: Path, dest: Path) -> None:
    """Unpack a packed snapshot into the (empty) layer directory `dest`, owners, devices and opaque marks
    included. The archive is one this host's workers wrote (checked by its sha256 on the way)."""
    with tarfile.open(archive, "r") as tar:
        members = tar.getmembers()
        for member in members:
            name = Path(member.name)
            if name.is_absolute() or ".." in name.parts:
                raise ValueError(f"Refusing snapshot entry {member.name!r}")
        tar.extractall(dest, members=members, numeric_owner=True, filter="fully_trusted")
        for member in members:
            if member.isdir() and member.pax_headers.get(_OPAQUE_PAX) == "y":
                os.setxattr(dest / member.name, OPAQUE_XATTR, b"y", follow_symlinks=False)
