"""Binaries that Modal images copy from other registries' images, fetched from PyPI instead.

`uv_pip_install` emits `COPY --from=ghcr.io/astral-sh/uv:<version> /uv /.uv/uv`; ghcr.io is not
reachable from every machine, while the same static binary ships in the `uv` wheel on PyPI."""

from __future__ import annotations

import asyncio
import shutil
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

from berth.hostio import run_logged
from berth.worker.rootfs import locked

LogFn = Callable[[str], None]


class ToolUnavailable(Exception):
    pass


async def uv_binary(root: Path, version: str, on_log: LogFn) -> Path:
    """The uv binary of `version` ("latest" is the newest on the index at first use), cached under root."""
    target = root / f"uv-{version}" / "uv"
    if target.exists():
        return target

    async def fetch() -> Path:
        if target.exists():
            return target
        spec = "uv" if version == "latest" else f"uv=={version}"
        tmp = target.parent.with_suffix(".tmp")
        await asyncio.to_thread(shutil.rmtree, tmp, True)
        tmp.mkdir(parents=True)
        argv = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "-d", str(tmp)]
        argv += ["--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64", spec]
        code = await run_logged(argv, on_log)
        wheels = list(tmp.glob("uv-*.whl"))
        if code != 0 or not wheels:
            raise ToolUnavailable(f"Could not fetch uv {version} from the package index (pip exit code {code})")
        with zipfile.ZipFile(wheels[0]) as wheel:
            member = next(n for n in wheel.namelist() if n.endswith("/scripts/uv"))
            (tmp / "uv").write_bytes(wheel.read(member))
        (tmp / "uv").chmod(0o755)
        for w in wheels:
            w.unlink()
        target.parent.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(shutil.rmtree, target.parent, True)
        tmp.rename(target.parent)
        return target

    return await locked(root / f"uv-{version}.lock", fetch)
