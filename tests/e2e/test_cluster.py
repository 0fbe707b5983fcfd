"""A control plane (`berth server`) with workers that join it over the network (`berth worker`), driven by
the unmodified modal CLI: calls spread over the workers, a worker killed mid-map loses nothing, calls wait
for a worker rather than fail, and join tokens are checked."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.e2e.conftest import APPS, BIN, BerthServer, _free_port, modal, wait_for

pytestmark = pytest.mark.timeout(600)


@dataclass
class Cluster:
    server: BerthServer
    token: str
    root: Path
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def grpc_url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    def add_worker(
        self, name: str, token: str | None = None, server: str = "", extra: tuple[str, ...] = ()
    ) -> subprocess.Popen[bytes]:
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - the worker writes to it until it ends
        args = [
            "--server",
            server or self.grpc_url,
            "--join-token",
            token or self.token,
            "--data-dir",
            self.root / name,
        ]
        proc = subprocess.Popen(
            [BIN / "berth", "worker", *args, "--name", name, "--runtime", "process", "--slots", "4", *extra],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.workers[name] = proc
        return proc

    def wait_joined(self, name: str) -> None:
        wait_for(lambda: f"worker {name} joined" in self.server.log(), f"worker {name} to join")

    def stop(self) -> None:
        for proc in self.workers.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.workers.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.server.proc.send_signal(signal.SIGINT)
        self.server.proc.wait(timeout=60)


def start_control_plane(root: Path, tls_host: str = "") -> Cluster:
    port = _free_port()
    data = root / "server"
    log_path = root / "server.log"
    listen = ["--listen", f"{tls_host}:{port}", "--tls"] if tls_host else ["--listen", f"127.0.0.1:{port}"]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([BIN / "berth", "server", "--data-dir", data, *listen], stdout=log, stderr=log)
    server = BerthServer(data, port, proc, log_path)
    wait_for(
        lambda: subprocess.run([BIN / "berth", "status", "--data-dir", data], capture_output=True).returncode == 0,
        "berth server to serve",
    )
    token = subprocess.run(
        [BIN / "berth", "join-token", "create", "--data-dir", data], capture_output=True, text=True, check=True
    ).stdout.strip()
    return Cluster(server, token, root)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = start_control_plane(tmp_path)
    yield c
    c.stop()


def children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_a_map_survives_a_worker_killed_mid_run(cluster: Cluster) -> None:
    for name in ("w1", "w2"):
        cluster.add_worker(name)
        cluster.wait_joined(name)
    run = subprocess.Popen(
        [BIN / "modal", "run", "cluster_map.py::main", "--n", "1500"],
        cwd=APPS,
        env=cluster.server.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    victim = cluster.workers["w1"]

    def victim_busy() -> bool:
        assert run.poll() is None, f"the map ended before w1 ran anything: {run.communicate()[0][-3000:]}"
        return len(children(victim.pid)) >= 1

    wait_for(victim_busy, "w1 to run containers", timeout=120)
    time.sleep(1.0)  # mid-map: some of its inputs are done, some are held
    orphans = children(victim.pid)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    out, _ = run.communicate(timeout=300)
    for pid in orphans:  # the killed worker's containers: the server no longer accepts them
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert run.returncode == 0, out
    assert "MAP OK 1500 outputs" in out, out
    assert "worker w1 left" in cluster.server.log()


def test_calls_wait_for_a_worker_and_run_once_one_joins(cluster: Cluster) -> None:
    run = subprocess.Popen(
        [BIN / "modal", "run", "cluster_map.py::main", "--n", "20"],
        cwd=APPS,
        env=cluster.server.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wait_for(lambda: "Waiting for a worker: none is connected" in cluster.server.log(), "the call to wait")
    assert run.poll() is None, "the call failed instead of waiting for a worker"
    cluster.add_worker("late")
    out, _ = run.communicate(timeout=300)
    assert run.returncode == 0, out
    assert "MAP OK 20 outputs" in out, out


def test_a_wrong_or_revoked_join_token_is_refused(cluster: Cluster) -> None:
    wrong = cluster.add_worker("wrong", token="wt-nobody:not-a-secret")
    assert wrong.wait(timeout=60) == 1
    assert "refused the join token" in (cluster.root / "wrong.log").read_text()
    token = subprocess.run(
        [BIN / "berth", "join-token", "create", "--data-dir", cluster.server.data_dir],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    subprocess.run(
        [BIN / "berth", "join-token", "revoke", token.split(":")[0], "--data-dir", cluster.server.data_dir],
        check=True,
        capture_output=True,
    )
    revoked = cluster.add_worker("revoked", token=token)
    assert revoked.wait(timeout=60) == 1
    assert "refused the join token" in (cluster.root / "revoked.log").read_text()
    assert "joined" not in cluster.server.log()
    assert modal(cluster.server, "app", "list").returncode == 0  # the server still serves


def test_workers_on_other_hosts_join_over_tls_checked_against_berths_ca(tmp_path: Path) -> None:
    # 127.0.0.2 stands for another host's address: only TLS is served there; local clients keep 127.0.0.1.
    cluster = start_control_plane(tmp_path, tls_host="127.0.0.2")
    try:
        https = f"https://127.0.0.2:{cluster.server.port}"
        ca = cluster.server.data_dir / "tls" / "ca.pem"
        untrusting = cluster.add_worker("no-ca", server=https)
        cluster.add_worker("tls", server=https, extra=("--ca", str(ca)))
        cluster.wait_joined("tls")
        # A 3 MiB argument goes through a blob: the container fetches it through its worker's relay.
        run = modal(cluster.server, "run", "cluster_map.py::big_len", "--size", str(3 * 1024 * 1024))
        assert run.returncode == 0, run.output
        assert "BIG LEN 3145728" in run.output
        assert untrusting.poll() is None  # it keeps retrying, and never joins
        assert "worker no-ca joined" not in cluster.server.log()
        assert "CERTIFICATE_VERIFY_FAILED" in (tmp_path / "no-ca.log").read_text()
    finally:
        cluster.stop()
