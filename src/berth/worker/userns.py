"""The user namespace of sandboxes: root inside a sandbox is host uid HOST_BASE (100000), and every id
inside maps to HOST_BASE + id, for SIZE ids (the range /etc/subuid gives `root` by default).

The image's layers are owned by host root on disk. Rather than copy and chown them per mapping, the
worker presents each layer through an *idmapped mount* (mount_setattr(MOUNT_ATTR_IDMAP), Linux 5.12+)
whose files owned by host uid n appear owned by HOST_BASE + n, i.e. by uid n inside the sandbox; the
container's overlay is stacked on those views. crun 1.8 cannot idmap mounts itself, so the worker makes
them with open_tree/mount_setattr/move_mount. Volumes are idmapped the same way: a sandbox's root reads
and writes a volume's root-owned files, and what it creates there is owned by uid 0 on disk, as a
function container's files are (the two share volumes). The process itself is never host root.

Every sandbox shares the one range (as Docker's userns-remap does): sandboxes cannot see each other's
files or processes (mount and pid namespaces), so a per-sandbox range would buy little and cost a
mapping per sandbox."""

from __future__ import annotations

import ctypes
import os
import subprocess
import time
from pathlib import Path
from typing import Any

HOST_BASE = 100_000
SIZE = 65_536

_SYS_OPEN_TREE = 428
_SYS_MOVE_MOUNT = 429
_SYS_MOUNT_SETATTR = 442
_AT_FDCWD = -100
_AT_EMPTY_PATH = 0x1000
_AT_RECURSIVE = 0x8000
_OPEN_TREE_CLONE = 1
_O_CLOEXEC = 0o2000000
_MOVE_MOUNT_F_EMPTY_PATH = 4
_MOUNT_ATTR_RDONLY = 0x1
_MOUNT_ATTR_IDMAP = 0x00100000

_libc = ctypes.CDLL(None, use_errno=True)


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


def oci_mappings() -> dict[str, Any]:
    """linux.uidMappings/gidMappings of the runtime spec."""
    mapping = [{"containerID": 0, "hostID": HOST_BASE, "size": SIZE}]
    return {"uidMappings": mapping, "gidMappings": mapping}


def host_id(inner: int) -> int:
    return HOST_BASE + inner


def _syscall(number: int, *args: Any) -> int:
    ret: int = _libc.syscall(number, *args)
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


class IdMapper:
    """Holds a user namespace with the sandbox mapping (its fd only: the process that made it is gone)
    and makes idmapped views of host directories through it."""

    def __init__(self) -> None:
        self._fd: int | None = None

    def _userns_fd(self) -> int:
        if self._fd is None:
            holder = subprocess.Popen(["unshare", "--user", "cat"], stdin=subprocess.PIPE)
            try:
                ns = f"/proc/{holder.pid}/ns/user"
                for _ in range(500):  # until unshare(2) has run in the child
                    if os.readlink(ns) != os.readlink("/proc/self/ns/user"):
                        break
                    time.sleep(0.002)
                Path(f"/proc/{holder.pid}/uid_map").write_text(f"0 {HOST_BASE} {SIZE}\n")
                Path(f"/proc/{holder.pid}/gid_map").write_text(f"0 {HOST_BASE} {SIZE}\n")
                self._fd = os.open(ns, os.O_RDONLY | os.O_CLOEXEC)
            finally:
                assert holder.stdin is not None
                holder.stdin.close()
                holder.wait()
        return self._fd

    def bind(self, source: str, target: Path, readonly: bool = False) -> None:
        """Mount an idmapped view of `source` (recursively) on `target`, which is created. Image layers are
        mounted read-only: nothing but the overlay reads them, and a stray rmtree cannot reach them."""
        target.mkdir(parents=True, exist_ok=True)
        flags = _OPEN_TREE_CLONE | _O_CLOEXEC | _AT_RECURSIVE
        tree = _syscall(_SYS_OPEN_TREE, _AT_FDCWD, source.encode(), flags)
        try:
            attr = _MountAttr(_MOUNT_ATTR_IDMAP | (_MOUNT_ATTR_RDONLY if readonly else 0), 0, 0, self._userns_fd())
            _syscall(
                _SYS_MOUNT_SETATTR, tree, b"", _AT_EMPTY_PATH | _AT_RECURSIVE, ctypes.byref(attr), ctypes.sizeof(attr)
            )
            _syscall(_SYS_MOVE_MOUNT, tree, b"", _AT_FDCWD, str(target).encode(), _MOVE_MOUNT_F_EMPTY_PATH)
        finally:
            os.close(tree)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def mounts_under(directory: Path) -> list[Path]:
    """Mount points at or below `directory`, deepest first (to unmount before removing it: a removal
    that walked into a view would delete the layer or volume behind it)."""
    prefix = str(directory).rstrip("/") + "/"
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")
        if point.startswith(prefix):
            found.append(Path(point))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)
