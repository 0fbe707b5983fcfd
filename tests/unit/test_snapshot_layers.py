"""A sandbox's overlay upper layer packed into a snapshot archive and unpacked as an image layer: files, owners
(shifted out of the sandbox's user namespace), whiteouts and opaque directories survive the trip."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from berth.domain.spec import WorkerCapacity
from berth.scheduling.tasks import never_fits
from berth.worker.snapshots import OPAQUE_XATTR, pack_upper, unpack_layer

BASE = 100_000

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="whiteouts, owners and trusted.* attributes need root")


@needs_root
def test_a_packed_upper_layer_unpacks_with_its_owners_whiteouts_and_opaque_dirs(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    (upper / "root").mkdir(parents=True)
    (upper / "root" / "note.txt").write_text("hello")
    os.chown(upper / "root" / "note.txt", BASE + 1000, BASE + 1000)
    (upper / "etc").mkdir()
    (upper / "etc" / "hosts").write_text("127.0.0.1 ta-x\n")  # the worker's, not the sandbox's
    os.mknod(upper / "etc" / "debian_version", stat.S_IFCHR | 0o600, os.makedev(0, 0))  # a whiteout
    (upper / "var" / "cache").mkdir(parents=True)
    os.setxattr(upper / "var" / "cache", OPAQUE_XATTR, b"y")
    archive = tmp_path / "snap.tar"

    sha = pack_upper(upper, archive, id_shift=BASE)
    layer = tmp_path / "layer"
    layer.mkdir()
    unpack_layer(archive, layer)

    assert sha == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert (layer / "root" / "note.txt").read_text() == "hello"
    assert (layer / "root" / "note.txt").stat().st_uid == 1000
    whiteout = (layer / "etc" / "debian_version").lstat()
    assert stat.S_ISCHR(whiteout.st_mode) and whiteout.st_rdev == os.makedev(0, 0)
    assert os.getxattr(layer / "var" / "cache", OPAQUE_XATTR) == b"y"
    assert not (layer / "etc" / "hosts").exists()


def test_unpacking_refuses_entries_that_leave_the_layer(tmp_path: Path) -> None:
    import tarfile

    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("../outside")
        tar.addfile(info)
    (tmp_path / "layer").mkdir()
    with pytest.raises(ValueError, match="outside"):
        unpack_layer(archive, tmp_path / "layer")


def test_a_request_no_worker_could_ever_hold_is_named_and_one_that_fits_somewhere_is_not() -> None:
    workers = [WorkerCapacity("a", 4, 4, 2.0, 2.0, 4096, 4096), WorkerCapacity("b", 4, 0, 8.0, 0.0, 16384, 0)]
    assert never_fits(workers, 16384, 8.0) is None  # b could, once it is free
    assert never_fits(workers, 32768, 1.0) == "a worker with 32768 MiB of memory: the largest has 16384 MiB"
    assert never_fits(workers, 0, 16.0) == "a worker with 16 CPUs: the largest has 8"
    assert never_fits([], 32768, 16.0) is None  # no worker known yet: one may join
    unknown_memory = [WorkerCapacity("c", 4, 0, 8.0, 0.0, 0, 0)]
    assert never_fits(unknown_memory, 32768, 1.0) is None
