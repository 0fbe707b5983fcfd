"""Sandbox disks: the sparse ext4 image a sandbox's writable layer lives on (so filling its root ends in
ENOSPC inside the sandbox and never fills the host's disk). Formatting one (mkfs.ext4) was the largest
single cost of a sandbox's start (about 40 ms of 100), so a few are formatted ahead, in the background,
and a start takes one by renaming it. Each image is used once: it is made fresh, mounted by one sandbox and
removed with its task directory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import subprocess
from pathlib import Path
from typing import Any

log = logging.getLogger("berth.worker.scratch")

READY_AHEAD = 2  # formatted images kept waiting; a burst larger than this formats the rest inline


class DiskUnavailable(OSError):
    pass


def make_disk(image: Path, size_mb: int) -> None:
    """A sparse ext4 image of size_mb. (No journal: the layer does not outlive the sandbox.)"""
    with open(image, "wb") as f:
        f.truncate(size_mb << 20)
    mkfs = ["mkfs.ext4", "-q", "-F", "-m", "0", "-O", "^has_journal", "-E", "lazy_itable_init=1,nodiscard", str(image)]
    out = subprocess.run(mkfs, capture_output=True, text=True)
    if out.returncode != 0:
        image.unlink(missing_ok=True)
        raise DiskUnavailable(f"cannot make the sandbox's disk (mkfs.ext4): {out.stderr.strip()}")


def mount_disk(image: Path, target: Path) -> None:
    """Loop-mount the image on target (the loop device goes with the last unmount: autoclear)."""
    target.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(["mount", "-o", "loop,nosuid,nodev", str(image), str(target)], capture_output=True, text=True)
    if out.returncode != 0:
        raise DiskUnavailable(f"cannot make the sandbox's disk (mount): {out.stderr.strip()}")


class ScratchDisks:
    """Formatted images of one size, kept in a directory beside the task directories (same filesystem, so a
    take is a rename)."""

    def __init__(self, size_mb: int, ahead: int = READY_AHEAD) -> None:
        self.size_mb = size_mb
        self.ahead = ahead
        self._refill: asyncio.Future[Any] | None = None

    def _pool(self, workdir: Path) -> Path:
        return workdir.parent.parent / f"scratch-disks-{self.size_mb}m"

    def _take(self, pool: Path, image: Path) -> bool:
        with contextlib.suppress(FileNotFoundError):
            for ready in sorted(pool.glob("*.img")):
                with contextlib.suppress(FileNotFoundError):  # another start took it first
                    os.rename(ready, image)
                    return True
        return False

    async def mount(self, image: Path, target: Path) -> None:
        """A formatted image at `image` (one made ahead, else one made now), mounted on target."""
        pool = self._pool(image.parent)
        if not await asyncio.to_thread(self._take, pool, image):
            await asyncio.to_thread(make_disk, image, self.size_mb)
        await asyncio.to_thread(mount_disk, image, target)
        self.refill(pool)

    def refill(self, pool: Path) -> None:
        if self.ahead <= 0 or (self._refill is not None and not self._refill.done()):
            return
        self._refill = asyncio.ensure_future(asyncio.to_thread(self._fill, pool))

    def _fill(self, pool: Path) -> None:
        pool.mkdir(mode=0o700, parents=True, exist_ok=True)
        for partial in pool.glob("*.partial"):  # left by a process that died while formatting
            partial.unlink(missing_ok=True)
        while len(list(pool.glob("*.img"))) < self.ahead:
            partial = pool / f"{secrets.token_hex(8)}.partial"
            try:
                make_disk(partial, self.size_mb)
            except DiskUnavailable as exc:
                log.warning("%s", exc)
                return
            partial.rename(partial.with_suffix(".img"))
