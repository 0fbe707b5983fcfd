"""Small host I/O helpers shared by the control plane and the workers: hashing a file, and running a
command with its output streamed line by line."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from pathlib import Path

LogFn = Callable[[str], None]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


async def run_logged(argv: list[str], on_log: LogFn, env: dict[str, str] | None = None) -> int:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
    )
    assert proc.stdout is not None
    while line := await proc.stdout.readline():
        on_log(line.decode("utf-8", errors="replace"))
    return await proc.wait()
