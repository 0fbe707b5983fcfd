"""Faults during real work on a local cluster (scripts/local-cluster.sh: PostgreSQL, Redis, SeaweedFS S3, a
TLS `berth server` and workers in their own network namespaces), driven by the unmodified modal CLI:
a 10,000-input map loses nothing and repeats nothing while a server replica is restarted, one worker is
killed and another is cut off for longer than its heartbeat allows. Two replicas share the database: the
client talks to replica 1 and worker 2 joins replica 2 first, so replica 2's containers serve the client's
map through the shared queue, and its restart hands back what they held."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.cluster.local_cluster import client_env, cluster_cmd
from tests.e2e.conftest import APPS, BIN, wait_for

pytestmark = [
    pytest.mark.timeout(900),
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("cluster")
    try:
        cluster_cmd("up", root, 3, 2)
        yield root
    finally:
        cluster_cmd("down", root)


def namespace_pids(root: Path, i: int) -> list[str]:
    ns = f"{json.loads((root / 'cluster.json').read_text())['bridge']}-w{i}"
    return subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()


def _query(root: Path, sql: str, *args: object) -> list[asyncpg.Record]:
    url = json.loads((root / "cluster.json").read_text())["engines"]["BERTH_DATABASE_URL"]

    async def fetch() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(url)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    return asyncio.run(fetch())


def held_by_replica(root: Path, name: str) -> dict[str, str]:
    """Inputs leased now by containers of the replica named `name`: input id -> the container that holds it (read
    from the cluster's database)."""
    rows = _query(
        root,
        "SELECT i.input_id, i.holder FROM inputs i JOIN tasks t ON t.task_id = i.holder JOIN replicas r "
        "ON r.replica_id = t.replica_id WHERE i.state = 'leased' AND r.name = $1",
        name,
    )
    return {r[0]: r[1] for r in rows}


def still_held(root: Path, held: dict[str, str]) -> int:
    """How many of these inputs the same containers still hold."""
    rows = _query(
        root, "SELECT input_id, holder FROM inputs WHERE input_id = ANY($1::text[]) AND state = 'leased'", list(held)
    )
    return sum(1 for r in rows if held.get(r[0]) == r[1])


def server_logs(root: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in sorted(root.glob("server*.log")))


def test_a_10000_input_map_loses_nothing_when_a_worker_dies_another_is_cut_off_and_a_replica_restarts(
    cluster: Path,
) -> None:
    replica2_log = cluster / "server2.log"
    run = subprocess.Popen(
        [BIN / "modal", "run", "cluster_map.py::main", "--n", "10000"],
        cwd=APPS,
        env=client_env(cluster),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # Worker 2 is joined to replica 2, whose containers serve the map of replica 1's client. Replica 2 dies
    # with kill -9 while they hold inputs, and comes back; worker 2 moves to replica 1 meanwhile.
    held: dict[str, str] = {}
    wait_for(
        lambda: held.update(held_by_replica(cluster, "replica2")) or held, "replica 2's containers to hold inputs", 180
    )
    assert "worker w2 joined" in replica2_log.read_text(errors="replace")
    cluster_cmd("restart-server", cluster, 2)
    # Either way, none stays with them: replica 2 back (or replica 1, when their server's beat is DEAD_AFTER_S
    # old) requeues what they hold, unless they finish it first through replica 1, which worker 2 moves to.
    wait_for(lambda: still_held(cluster, held) == 0, "what replica 2's containers held to be handed back", 60)
    # Worker 1 runs containers (its namespace holds more than the worker itself): kill it mid-map.
    wait_for(lambda: len(namespace_pids(cluster, 1)) > 1, "worker 1 to run containers", 120)
    time.sleep(2)
    cluster_cmd("kill-worker", cluster, 1)
    # Worker 3 loses its network for longer than the hub's heartbeat allows, and comes back.
    wait_for(lambda: len(namespace_pids(cluster, 3)) > 1, "worker 3 to run containers", 120)
    cluster_cmd("cut-worker", cluster, 3)
    wait_for(lambda: "worker w3 left" in server_logs(cluster), "a server to give worker 3 up", 60)
    time.sleep(3)
    cluster_cmd("heal-worker", cluster, 3)
    out, _ = run.communicate(timeout=600)
    assert run.returncode == 0, out[-4000:]
    assert "MAP OK 10000 outputs" in out, out[-4000:]
    logs = server_logs(cluster)
    assert "worker w1 left" in logs
    assert logs.count("replica replica2 (") >= 2  # registered, then again after the restart
    wait_for(lambda: server_logs(cluster).count("worker w3 joined") >= 2, "worker 3 to rejoin", 60)
