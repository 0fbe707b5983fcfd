"""Two `berth server` replicas on one PostgreSQL, Redis and S3, driven by the unmodified modal CLI: the client
talks to replica 1 while the only worker is joined to replica 2. The call runs on replica 2's container,
its printed output reaches the client through replica 1, and cancelling a running call through replica 1
stops it on replica 2."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from berth.devservices.s3 import SeaweedS3
from tests.e2e.conftest import BIN, BerthServer, _free_port, modal, wait_for
from tests.e2e.test_cluster import Cluster

pytestmark = pytest.mark.timeout(600)


def _start_replica(root: Path, name: str, engines: dict[str, str]) -> BerthServer:
    port = _free_port()
    data = root / name
    log_path = root / f"{name}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [BIN / "berth", "server", "--data-dir", data, "--listen", f"127.0.0.1:{port}", "--replica-name", name],
            stdout=log,
            stderr=log,
            env={**os.environ, **engines},
        )
    wait_for(
        lambda: subprocess.run([BIN / "berth", "status", "--data-dir", data], capture_output=True).returncode == 0,
        f"replica {name} to serve",
    )
    return BerthServer(data, port, proc, log_path)


@pytest.fixture
def replicas(
    fresh_postgres_url: str, redis_url: str, seaweed_s3: SeaweedS3, tmp_path: Path
) -> Iterator[tuple[BerthServer, Cluster]]:
    engines = {
        "BERTH_DATABASE_URL": fresh_postgres_url,
        "BERTH_REDIS_URL": redis_url,
        "BERTH_BLOBS_URL": seaweed_s3.blobs_url("replicas"),
    }
    first = _start_replica(tmp_path, "r1", engines)
    second = _start_replica(tmp_path, "r2", engines)
    token = subprocess.run(
        [BIN / "berth", "join-token", "create", "--data-dir", second.data_dir],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **engines},
    ).stdout.strip()
    cluster = Cluster(second, token, tmp_path)
    cluster.add_worker("w1")
    cluster.wait_joined("w1")
    try:
        yield first, cluster
    finally:
        cluster.stop()
        first.proc.terminate()
        first.proc.wait(timeout=60)


def test_a_client_of_one_replica_is_served_by_anothers_worker_logs_and_cancel_included(
    replicas: tuple[BerthServer, Cluster], tmp_path: Path
) -> None:
    first, cluster = replicas
    run = modal(first, "run", "replicas.py::main", "--note", str(tmp_path / "note"), timeout=300)
    assert run.returncode == 0, run.output + first.log() + cluster.server.log()
    assert "RESULT 42" in run.stdout, run.output
    assert "container says 21" in run.output  # printed in replica 2's container, streamed by replica 1
    cancel = re.search(r"CANCEL (\S+) after (\d+)s", run.stdout)
    assert cancel is not None, run.output
    assert cancel.group(1) not in ("not", "TimeoutError"), run.output  # the running input was stopped
    assert int(cancel.group(2)) < 30, run.output
    assert "worker w1 joined" not in first.log()  # the work was replica 2's
