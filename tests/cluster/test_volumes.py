"""Volumes on a cluster: the volume's content is its head (a manifest in the blob store), and every server
replica and every worker holds a copy. A container's writes reach the others when it commits or exits, also
after its worker dies; either replica serves the CLI's reads and writes."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.local_cluster import client_env, cluster_cmd
from tests.e2e.conftest import APPS, BIN, wait_for

pytestmark = [
    pytest.mark.timeout(900),
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("vol-cluster")
    try:
        cluster_cmd("up", root, 2, 2)
        yield root
    finally:
        cluster_cmd("down", root)


def modal(root: Path, replica: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "modal"), *args], env=client_env(root, replica), capture_output=True, text=True, timeout=300
    )


def run_step(root: Path, step: str) -> str:
    out = modal(root, 1, "run", str(APPS / "cluster_volume.py"), "--step", step)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def worker_of(stdout: str) -> str:
    found = re.search(r"^HOME .*/(w\d)/", stdout, re.MULTILINE)
    assert found is not None, stdout
    return found[1]


def volume_get(root: Path, replica: int, path: str) -> str | None:
    """The file's content, as `modal volume get` downloads it through that replica (None if it cannot)."""
    dest = root / f"got-{replica}-{time.monotonic_ns()}"
    out = modal(root, replica, "volume", "get", "cluster-vol", path, str(dest))
    return dest.read_text() if out.returncode == 0 and dest.is_file() else None


def test_a_volume_is_one_volume_across_workers_and_replicas(cluster: Path, tmp_path: Path) -> None:
    # Written on a worker without a commit: the container's exit, when the app stops, commits it.
    worker_of(run_step(cluster, "write"))
    wait_for(lambda: volume_get(cluster, 2, "sub/a.txt") == "one", "replica 2 to serve the exited container", 120)
    assert volume_get(cluster, 1, "sub/a.txt") == "one"
    # Written through replica 2, by the CLI.
    local = tmp_path / "b.txt"
    local.write_text("two")  # no newline: the listing below compares contents
    put = modal(cluster, 2, "volume", "put", "cluster-vol", str(local), "/b.txt")
    assert put.returncode == 0, put.stdout + put.stderr
    # Committed explicitly by a container; then that worker dies.
    committed_on = worker_of(run_step(cluster, "commit"))
    cluster_cmd("kill-worker", cluster, int(committed_on[1:]))
    out = run_step(cluster, "read")
    assert worker_of(out) != committed_on
    assert "FOUND [('b.txt', 'two'), ('sub/a.txt', 'one'), ('sub/c.txt', 'three')]" in out, out
    ls = modal(cluster, 1, "volume", "ls", "cluster-vol", "/sub")
    assert ls.returncode == 0 and "a.txt" in ls.stdout and "c.txt" in ls.stdout, ls.stdout + ls.stderr
