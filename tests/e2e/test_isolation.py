"""Isolation on the crun runtime: a function sees its image's filesystem, not the host's; it has its
own hostname, pid namespace and network; its memory limit is enforced."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.e2e.conftest import BIN, BerthServer, call_remote, modal


def test_function_sees_its_image_and_its_own_root_not_the_hosts(berth_oci: BerthServer) -> None:
    seen = call_remote(berth_oci, "images_sklearn", "environment")
    assert isinstance(seen, dict)
    assert "bookworm" in str(seen["os_release"])  # the image's Debian, whatever the host runs
    assert str(seen["python"]).startswith("3.11.2")  # Debian's Python, not the host venv's
    assert seen["pid"] != os.getpid() and int(str(seen["pid"])) < 100  # its own pid namespace
    assert str(seen["hostname"]).startswith("ta-")
    assert seen["pip_config"] == "/dev/null"
    assert seen["cwd"] == "/root"
    host_only = [str(Path(__file__).resolve()), str(BIN / "berth"), "/work"]
    visible = call_remote(berth_oci, "images_sklearn", "exists", host_only + ["/usr/local/lib/python3.11"])
    assert visible == {**{p: False for p in host_only}, "/usr/local/lib/python3.11": True}
    assert not Path("/berth-written-by-container").exists()  # its writes stay in its own root


def test_image_packages_are_there_and_not_the_hosts(berth_oci: BerthServer) -> None:
    # scikit-learn is in the image only: the host venv that runs the client lacks it.
    assert subprocess.run([sys.executable, "-c", "import sklearn"], capture_output=True).returncode != 0
    assert call_remote(berth_oci, "images_sklearn", "fit") > 900  # type: ignore[operator]


def test_container_reaches_the_internet_through_its_own_network(berth_oci: BerthServer) -> None:
    seen = call_remote(berth_oci, "isolation", "network")
    assert seen == {"status": "200", "hostname": seen["hostname"]}  # type: ignore[index]


def test_memory_limit_is_enforced_and_the_caller_is_told(berth_oci: BerthServer) -> None:
    small = modal(berth_oci, "run", "isolation.py", "--mb", "16", timeout=600)
    assert small.returncode == 0, small.output
    assert "hog=16" in small.stdout
    big = modal(berth_oci, "run", "isolation.py", "--mb", "512", timeout=600)
    assert big.returncode != 0
    assert "hog=512" not in big.stdout
    assert "OOM-killed" in big.output
    assert "exceeded its memory limit of 128 MiB" in big.output


def test_containers_leave_no_namespaces_or_mounts_behind(berth_oci: BerthServer) -> None:
    run = modal(berth_oci, "run", "isolation.py", "--mb", "8", timeout=600)
    assert run.returncode == 0, run.output
    # Once the app has stopped, none of this server's stopped containers keeps a mount or a namespace.
    with sqlite3.connect(berth_oci.data_dir / "berth.db") as db:
        stopped = {row[0] for row in db.execute("SELECT task_id FROM tasks WHERE state = 'stopped'")}
    assert stopped
    assert _task_traces(berth_oci.data_dir, stopped) == []


def _task_ids(data_dir: Path) -> set[str]:
    tasks_dir = data_dir / "tasks"
    return {p.name for p in tasks_dir.iterdir()} if tasks_dir.exists() else set()


def _task_traces(data_dir: Path, task_ids: set[str]) -> list[str]:
    """Overlay mounts and network namespaces of these containers of the server on data_dir."""
    mounts = [
        line
        for line in Path("/proc/mounts").read_text().splitlines()
        if any(str(data_dir / "tasks" / t) in line for t in task_ids)
    ]
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split("\n")
    return mounts + [n for n in netns if n.split(" ")[0].removeprefix("berth-") in task_ids]


def test_restart_after_kill_removes_what_the_dead_server_left(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        import pytest

        pytest.skip("the crun runtime needs root")
    from tests.e2e.conftest import APPS, start_server, stop_server

    data = tmp_path / "data"
    server = start_server(data, extra_args=["--runtime", "crun"])
    client = subprocess.Popen(
        [sys.executable, "isolation_sleeper.py"], cwd=APPS, env=server.env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert client.stdout is not None
        for line in client.stdout:
            if "SLEEPER-STARTED" in line:
                break
        old = _task_ids(data)
        assert len(_task_traces(data, old)) == 2, "the running container has a mount and a namespace"
        server.proc.kill()
        server.proc.wait(timeout=30)
        assert len(_task_traces(data, old)) == 2  # kill -9 leaves them behind
    finally:
        client.kill()
        client.wait(timeout=30)
    again = start_server(data, extra_args=["--runtime", "crun"])
    try:
        assert _task_traces(data, old) == []  # (the restarted server may run the input again, elsewhere)
    finally:
        stop_server(again)
