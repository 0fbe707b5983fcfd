"""Cloud bucket mounts on a worker: s3fs (Debian's `s3fs` package, installed by scripts/setup-host.sh) mounts each
bucket on the host, in the foreground under this worker's control, and the container gets that directory bound
at the mount's path. s3fs checks the bucket and the keys as it starts; a refusal is reported with its reason
(no such bucket, invalid credentials) instead of an empty directory."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from berth.domain.spec import BucketMount

MOUNT_TIMEOUT_S = 30.0
_CRITICAL = re.compile(r"\[(?:CRT|ERR)\] [^:]+:\S+: (.*)")


class BucketMountError(OSError):
    pass


@dataclass
class MountedBucket:
    path: Path
    proc: asyncio.subprocess.Process
    drain: asyncio.Future[None] | None = None  # reads what s3fs keeps logging


def options(bucket: BucketMount, passwd: Path | None, owner: int) -> list[str]:
    opts = ["allow_other", f"uid={owner}", f"gid={owner}", "umask=0022", "mp_umask=0022"]
    if bucket.endpoint_url:
        opts.append(f"url={bucket.endpoint_url}")
    if bucket.path_style:
        opts.append("use_path_request_style")
    if bucket.region:
        opts.append(f"endpoint={bucket.region}")
    opts.append(f"passwd_file={passwd}" if passwd is not None else "public_bucket=1")
    if bucket.read_only:
        opts.append("ro")
    if bucket.requester_pays:
        opts.append("requester_pays")
    return ["-o", ",".join(opts)]


def source(bucket: BucketMount) -> str:
    prefix = bucket.key_prefix.strip("/")
    return f"{bucket.bucket}:/{prefix}" if prefix else bucket.bucket


def _mounted(path: Path) -> bool:
    with contextlib.suppress(OSError):
        return f" {path} " in Path("/proc/mounts").read_text()
    return False


def _reason(output: str) -> str:
    found = [m.group(1).strip() for m in _CRITICAL.finditer(output)]
    return found[-1] if found else (output.strip().splitlines() or ["s3fs exited"])[-1]


async def mount(bucket: BucketMount, target: Path, owner: int = 0) -> MountedBucket:
    """Mount the bucket at `target` (a host directory); BucketMountError with s3fs's reason when it cannot."""
    binary = shutil.which("s3fs")
    if binary is None:
        raise BucketMountError(
            "CloudBucketMount needs s3fs on the worker's host (apt-get install s3fs, or scripts/setup-host.sh)"
        )
    target.mkdir(parents=True, exist_ok=True)
    passwd = None
    if bucket.access_key_id:
        passwd = target.with_name(target.name + ".passwd")
        fd = os.open(passwd, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"{bucket.access_key_id}:{bucket.secret_access_key}\n")
    argv = [binary, "-f", source(bucket), str(target), *options(bucket, passwd, owner)]
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL
    )
    mounted = MountedBucket(target, proc)
    what = f"Cannot mount bucket '{bucket.bucket}' at {bucket.mount_path}"
    deadline = time.monotonic() + MOUNT_TIMEOUT_S
    while proc.returncode is None and not _mounted(target) and time.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 0.05)
    if proc.returncode is None and _mounted(target):
        # s3fs checks the bucket and the keys once the mount is up: the first access waits for that check
        with contextlib.suppress(OSError):
            await asyncio.to_thread(os.listdir, target)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 0.2)
    if proc.returncode is not None:
        output = (await proc.stdout.read()).decode(errors="replace") if proc.stdout else ""
        await unmount(mounted)
        raise BucketMountError(f"{what}: {_reason(output)}")
    if not _mounted(target):
        await unmount(mounted)
        raise BucketMountError(f"{what}: s3fs did not mount it within {MOUNT_TIMEOUT_S:g} s")
    if proc.stdout is not None:  # s3fs keeps logging; nobody reads it, so drain it
        mounted.drain = asyncio.ensure_future(_drain(proc.stdout))
    return mounted


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.read(65536):
        pass


async def unmount(mounted: MountedBucket) -> None:
    if _mounted(mounted.path):
        await asyncio.to_thread(subprocess.run, ["umount", "-l", str(mounted.path)], capture_output=True)
    if mounted.proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            mounted.proc.terminate()
        try:
            await asyncio.wait_for(mounted.proc.wait(), 5)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                mounted.proc.kill()
            await mounted.proc.wait()
    mounted.path.with_name(mounted.path.name + ".passwd").unlink(missing_ok=True)
