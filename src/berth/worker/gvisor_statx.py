"""A workaround for runsc 20221219 (Debian bookworm's gVisor): its statx() and fstatat() answer EINVAL for
every path when given AT_NO_AUTOMOUNT, which coreutils 9 always passes, so `ls` and `stat` fail in a
bookworm image ("Invalid argument") while the files are there. Later gVisor ignores the flag (it has no
automounts). gvisor_statx.c, beside this file, is a tiny shared object with its own `statx` that drops the
flag and makes the call; runsc containers get it bind-mounted read-only with an /etc/ld.so.preload (also a
read-only bind, so nothing of it lands in the container's own writable layer) that names it before whatever
the image's own ld.so.preload names. It has no libc of its own, so it loads into any glibc process; static
binaries and musl (which reads no ld.so.preload) are untouched."""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import stat
from pathlib import Path

from berth.worker import native

log = logging.getLogger("berth.worker.gvisor_statx")

SOURCE = Path(__file__).with_name("gvisor_statx.c")
IN_CONTAINER = "/__berth/gvisor-statx.so"
PRELOAD = "/etc/ld.so.preload"
_MAX_PRELOAD = 64 * 1024


def build(cache: Path) -> Path | None:
    """The shared object for this source, compiled once per host; None where it can't be (no C compiler, not
    x86_64): runsc containers then run without it."""
    if platform.machine() != "x86_64" or not SOURCE.exists():
        return None
    flags = ["-shared", "-fPIC", "-nostdlib", "-O2"]
    return native.compile_once(SOURCE, cache, "gvisor-statx", flags, "`ls` and `stat` fail in runsc containers")


def image_preload(rootfs: Path) -> str:
    """The image's own /etc/ld.so.preload, read without following a link out of the root ('' when none)."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    with contextlib.ExitStack() as fds:
        try:
            root = os.open(rootfs, flags | os.O_DIRECTORY)
            fds.callback(os.close, root)
            etc = os.open("etc", flags | os.O_DIRECTORY, dir_fd=root)
            fds.callback(os.close, etc)
            fd = os.open("ld.so.preload", flags | os.O_NONBLOCK, dir_fd=etc)
            fds.callback(os.close, fd)
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return ""
            return os.read(fd, _MAX_PRELOAD).decode(errors="replace")
        except OSError:
            return ""


def write_preload(rootfs: Path, target: Path) -> None:
    """The ld.so.preload a runsc container gets: the shim, then what the image's own names."""
    own = image_preload(rootfs)
    target.write_text(f"{IN_CONTAINER}\n{own}" + ("" if not own or own.endswith("\n") else "\n"))
    os.chmod(target, 0o644)
