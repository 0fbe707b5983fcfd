"""A build that runs out of disk says so, keeps nothing of the failed step, and the server goes on
serving. The server under test keeps its image cache on a small tmpfs whose layer index points at the
machine's cached debian_slim layers, so only the failing step writes to it."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import BerthServer, modal, start_server, stop_server

SHARED_CACHE = Path(os.environ.get("BERTH_IMAGE_CACHE", "/var/cache/berth"))


@pytest.fixture
def small_cache(berth_oci: BerthServer, tmp_path: Path) -> Iterator[Path]:
    warm = modal(berth_oci, "run", "images_disk.py", timeout=1200)  # debian_slim's layers in the shared cache
    assert warm.returncode == 0, warm.output
    cache = tmp_path / "cache"
    cache.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600m", "tmpfs", str(cache)], check=True)
    try:
        for name in ("base", "client", "tools"):
            (cache / name).symlink_to(SHARED_CACHE / name)
        (cache / "layers").mkdir()
        subprocess.run(["cp", "-a", str(SHARED_CACHE / "layers" / "index"), str(cache / "layers")], check=True)
        yield cache
    finally:
        subprocess.run(["umount", "-l", str(cache)], check=False)


def test_a_build_that_fills_the_disk_says_so_and_the_server_goes_on(small_cache: Path, tmp_path: Path) -> None:
    server = start_server(
        tmp_path / "data", extra_env={"BERTH_IMAGE_CACHE": str(small_cache)}, extra_args=["--runtime", "crun"]
    )
    try:
        full = modal(server, "run", "images_disk.py", env={"BERTH_TEST_FILL_MB": "2000"}, timeout=600)
        assert full.returncode != 0, full.output
        assert "No space left on device" in full.output, full.output
        assert "The build ran out of disk space" in full.output, full.output
        assert not any((small_cache / "layers" / "tmp").iterdir())  # the failed step left nothing behind
        again = modal(server, "run", "images_disk.py", timeout=600)
        assert again.returncode == 0, again.output
        assert "ping: pong" in again.stdout
    finally:
        assert stop_server(server) == 0
