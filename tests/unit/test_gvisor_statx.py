"""The runsc statx shim (berth.worker.gvisor_statx): it builds, loads into a glibc process and passes calls
and errors through; the ld.so.preload it comes with keeps the image's own entries and never follows a link
out of the container's root."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

import pytest

from berth.worker import gvisor_statx


def test_the_shim_loads_into_coreutils_and_passes_results_and_errno_through(tmp_path: Path) -> None:
    if platform.machine() != "x86_64" or not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("the shim is built for x86_64 with the host's C compiler")
    shim = gvisor_statx.build(tmp_path / "cache")
    assert shim is not None and shim == gvisor_statx.build(tmp_path / "cache")  # built once
    env = {**os.environ, "LD_PRELOAD": str(shim), "LC_ALL": "C"}
    ok = subprocess.run(["stat", "-c", "%F %s", "/etc/hostname"], capture_output=True, text=True, env=env)
    assert ok.returncode == 0 and ok.stdout == f"regular file {os.stat('/etc/hostname').st_size}\n", ok.stderr
    missing = subprocess.run(["ls", "-l", str(tmp_path / "nothing")], capture_output=True, text=True, env=env)
    assert missing.returncode == 2 and "No such file or directory" in missing.stderr  # errno reached ls
    assert "cannot be preloaded" not in ok.stderr + missing.stderr


def test_the_preload_names_the_shim_then_the_images_own(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    target = tmp_path / "preload"
    gvisor_statx.write_preload(root, target)
    assert target.read_text() == f"{gvisor_statx.IN_CONTAINER}\n"
    (root / "etc" / "ld.so.preload").write_text("/usr/lib/libimage.so")
    gvisor_statx.write_preload(root, target)
    assert target.read_text() == f"{gvisor_statx.IN_CONTAINER}\n/usr/lib/libimage.so\n"


def test_the_images_preload_is_not_read_through_a_link(tmp_path: Path) -> None:
    secret = tmp_path / "host-only"
    secret.write_text("the host's\n")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "ld.so.preload").symlink_to(secret)
    assert gvisor_statx.image_preload(root) == ""
    other = tmp_path / "other"
    other.mkdir()
    (other / "etc").symlink_to(tmp_path / "hostetc")
    (tmp_path / "hostetc").mkdir()
    (tmp_path / "hostetc" / "ld.so.preload").write_text("the host's\n")
    assert gvisor_statx.image_preload(other) == ""
