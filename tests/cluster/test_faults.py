"""Faults during real work on a local cluster (scripts/local-cluster.sh: PostgreSQL, Redis, SeaweedFS S3, a
TLS `berth server` and workers in their own network namespaces), driven by the unmodified modal CLI:
a 10,000-input map loses nothing and repeats nothing while one worker is killed and another is cut off
for longer than its heartbeat allows."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import APPS, BIN, wait_for

SCRIPT = Path(__file__).parents[2] / "scripts" / "local-cluster.sh"
pytestmark = [
    pytest.mark.timeout(900),
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
]


def cluster_cmd(*args: object, timeout: float = 300) -> str:
    out = subprocess.run([SCRIPT, *map(str, args)], capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("cluster")
    try:
        cluster_cmd("up", root, 3)
        yield root
    finally:
        cluster_cmd("down", root)


def client_env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODAL_")}
    for assignment in shlex.split(cluster_cmd("env", root).removeprefix("export ")):
        key, _, value = assignment.partition("=")
        env[key] = value
    env["MODAL_CONFIG_PATH"] = str(root / "client.toml")
    return env


def namespace_pids(root: Path, i: int) -> list[str]:
    ns = f"{json.loads((root / 'cluster.json').read_text())['bridge']}-w{i}"
    return subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()


def test_a_10000_input_map_loses_nothing_when_a_worker_dies_and_another_is_cut_off(cluster: Path) -> None:
    log = cluster / "server.log"
    run = subprocess.Popen(
        [BIN / "modal", "run", "cluster_map.py::main", "--n", "10000"],
        cwd=APPS,
        env=client_env(cluster),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # Worker 1 runs containers (its namespace holds more than the worker itself): kill it mid-map.
    wait_for(lambda: len(namespace_pids(cluster, 1)) > 1, "worker 1 to run containers", 120)
    time.sleep(2)
    cluster_cmd("kill-worker", cluster, 1)
    # Worker 2 loses its network for longer than the hub's heartbeat allows, then comes back.
    wait_for(lambda: len(namespace_pids(cluster, 2)) > 1, "worker 2 to run containers", 120)
    cluster_cmd("cut-worker", cluster, 2)
    wait_for(lambda: "worker w2 left" in log.read_text(errors="replace"), "the server to give worker 2 up", 60)
    time.sleep(3)
    cluster_cmd("heal-worker", cluster, 2)
    out, _ = run.communicate(timeout=600)
    assert run.returncode == 0, out[-4000:]
    assert "MAP OK 10000 outputs" in out, out[-4000:]
    server_log = log.read_text(errors="replace")
    assert "worker w1 left" in server_log
    wait_for(lambda: log.read_text(errors="replace").count("worker w2 joined") >= 2, "worker 2 to rejoin", 60)
