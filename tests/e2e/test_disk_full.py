"""The data directory's disk fills up: the server's data dir is a small loop-mounted ext4, filled to the last
block. Writes are refused with RESOURCE_EXHAUSTED saying the disk is full, reads keep working, nothing stored
before is damaged, and once space returns the same writes succeed."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import BerthServer, modal, sdk, start_server, stop_server
from tests.reliability.record import note

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="loop mounts need root")


@pytest.fixture(scope="module")
def small_disk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BerthServer]:
    base = tmp_path_factory.mktemp("disk-full")
    image, mnt = base / "disk.img", base / "mnt"
    mnt.mkdir()
    subprocess.run(["truncate", "-s", "96M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], check=True)
    server = None
    try:
        server = start_server(mnt)  # its log goes beside the mount, not on it
        yield server
    finally:
        if server is not None:
            stop_server(server)
        subprocess.run(["umount", "-d", str(mnt)], check=True)  # -d frees the loop device too
        image.unlink()


def fill(directory: Path) -> Path:
    """Write one file until the filesystem has no block left; returns it (delete it to free the space)."""
    filler = directory / "filler"
    chunk = b"\0" * (1024 * 1024)
    with open(filler, "wb", buffering=0) as f:
        size = len(chunk)
        while size:
            try:
                f.write(chunk[:size])
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                size //= 2
    os.sync()
    return filler


WRITE = """
import io, sys, modal
d = modal.Dict.from_name("disk-dict", create_if_missing=True)
vol = modal.Volume.from_name("disk-vol", create_if_missing=True, version=2)
tag = sys.argv[1]
outcome = {}
try:
    d.put(tag, "x" * 300_000)
    outcome["dict"] = "ok"
except Exception as exc:
    outcome["dict"] = f"{type(exc).__name__}: {exc}"
try:
    with vol.batch_upload() as batch:
        batch.put_file(io.BytesIO(tag.encode() * 200_000), f"{tag}.bin")
    outcome["volume"] = "ok"
except Exception as exc:
    outcome["volume"] = f"{type(exc).__name__}: {exc}"
print(outcome)
"""

READ = """
import modal
d = modal.Dict.from_name("disk-dict")
vol = modal.Volume.from_name("disk-vol", version=2)
same = b"".join(vol.read_file("before.bin")) == b"before" * 200_000
print({"dict": d.get("before") == "x" * 300_000, "volume": same})
"""


def test_a_full_data_disk_refuses_writes_clearly_and_serves_again_when_space_returns(small_disk: BerthServer) -> None:
    assert "{'dict': 'ok', 'volume': 'ok'}" in sdk(small_disk, WRITE.replace("sys.argv[1]", "'before'"))
    filler = fill(small_disk.data_dir)
    try:
        full = sdk(small_disk, WRITE.replace("sys.argv[1]", "'during'"))
        assert "'dict': 'ok'" not in full and "'volume': 'ok'" not in full, full
        assert full.count("ResourceExhaustedError: Berth's data disk is full") == 2, full
        assert "{'dict': True, 'volume': True}" in sdk(small_disk, READ)  # reads go on
        assert modal(small_disk, "app", "list").returncode == 0
    finally:
        filler.unlink()
    assert "{'dict': 'ok', 'volume': 'ok'}" in sdk(small_disk, WRITE.replace("sys.argv[1]", "'after'"))
    assert "{'dict': True, 'volume': True}" in sdk(small_disk, READ)
    assert "Internal error" not in small_disk.log()
    note(
        "data disk full (loop-mounted ext4)",
        faults=1,
        outputs_checked=4,
        errors=0,
        outcome="dict and volume writes RESOURCE_EXHAUSTED 'data disk is full'; reads on; writes again after",
    )
