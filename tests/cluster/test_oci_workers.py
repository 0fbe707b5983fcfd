"""Remote workers with an OCI runtime: a worker in a network namespace of its own (a host of its own, as far
as the network goes) runs its containers on crun and sets up their isolation itself, the way `berth up`
does on one host. Its containers reach the control plane only through the worker's relay: not the server's
own address, not the worker's other ports, and no private network."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.local_cluster import client_env, cluster_cmd
from tests.e2e.conftest import APPS, BIN

pytestmark = [
    pytest.mark.timeout(900),
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(shutil.which("crun") is None, reason="crun is not installed: run scripts/setup-host.sh"),
]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("oci-cluster")
    try:
        cluster_cmd("up", root, 1, runtime="crun")
        yield root
    finally:
        cluster_cmd("down", root, runtime="crun")


def look(cluster: Path, host_path: str, targets: list[str]) -> dict[str, Any]:
    """What a function container on the cluster's worker sees (tests/e2e/apps/oci_worker.py)."""
    argv = [BIN / "modal", "run", str(APPS / "oci_worker.py"), "--host-path", host_path, "--targets", ",".join(targets)]
    run = subprocess.run(argv, env=client_env(cluster), capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    seen: dict[str, Any] = json.loads(next(line for line in run.stdout.splitlines() if line.startswith("LOOK "))[5:])
    return seen


def test_a_remote_crun_worker_isolates_its_containers_and_relays_their_calls(cluster: Path) -> None:
    state = json.loads((cluster / "cluster.json").read_text())
    server = f"{state['prefix']}.1:{state['ports'][0]}"  # the server's TLS address, as the worker reaches it
    # The worker's command router listens on every address of its host: open to clients, not to containers.
    router = re.search(r"command router serving on http://([\d.]+):(\d+)", (cluster / "w1.log").read_text())
    assert router is not None
    seen = look(cluster, str(cluster), [server, f"{router[1]}:{router[2]}", f"172.21.0.1:{router[2]}"])
    assert seen["host_path_visible"] is False  # its own root filesystem, not the worker host's
    assert seen["pid1"] == "/__berth/init"  # its own pid namespace, whose pid 1 is the container's init
    assert seen["server_url"].startswith("http://172.21.0.1:")  # the worker's relay on its bridge
    assert all(how != "open" for how in seen["reach"].values()), seen["reach"]
    # The same probe does find an open port: the relay the container's calls go through.
    relay = seen["server_url"].removeprefix("http://")
    assert look(cluster, "/", [relay])["reach"] == {relay: "open"}


def test_a_sandbox_on_a_remote_crun_worker_execs_through_that_workers_router(cluster: Path) -> None:
    script = textwrap.dedent(
        """
        import json, modal
        app = modal.App.lookup("e2e-oci-sandbox", create_if_missing=True)
        sb = modal.Sandbox.create("sleep", "300", app=app, image=modal.Image.debian_slim())
        p = sb.exec("sh", "-c", "xargs -0 echo </proc/1/cmdline; id -u; test -e /work || echo no-host-fs")
        out = p.stdout.read()
        p.wait()
        sb.terminate()
        sb.wait(raise_on_termination=False)
        print("SANDBOX " + json.dumps({"out": out, "rc": p.returncode, "sb_rc": sb.returncode}))
        """
    )
    run = subprocess.run(
        [BIN / "python", "-c", script], env=client_env(cluster), capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stdout + run.stderr
    seen = json.loads(next(line for line in run.stdout.splitlines() if line.startswith("SANDBOX "))[8:])
    assert seen["rc"] == 0 and seen["sb_rc"] == 137, seen
    # Its own pid namespace (pid 1 is the container's init running the sandbox's command, through berth-execd
    # where the worker could build it), root inside it, and its own root filesystem.
    assert seen["out"] in (
        "/__berth/init -s -- /__berth/execd -- sleep 300\n0\nno-host-fs\n",
        "/__berth/init -s -- sleep 300\n0\nno-host-fs\n",
    ), seen


SNAPSHOT = """
import modal
app = modal.App.lookup("cluster-snapshot", create_if_missing=True)
sb = modal.Sandbox.create("sleep", "300", app=app, image=modal.Image.debian_slim())
assert sb.exec("sh", "-c", "echo taken on the remote worker > /srv/marker").wait() == 0
image = sb.snapshot_filesystem()
sb.terminate()
again = modal.Sandbox.create("cat", "/srv/marker", app=app, image=image)
again.wait()
print("SNAPSHOT", image.object_id, again.returncode, again.stdout.read().strip())
"""


def test_a_sandbox_snapshot_taken_on_a_remote_worker_starts_a_new_sandbox(cluster: Path) -> None:
    run = subprocess.run(
        [BIN / "python", "-c", textwrap.dedent(SNAPSHOT)],
        env=client_env(cluster),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    line = next(x for x in run.stdout.splitlines() if x.startswith("SNAPSHOT "))
    image_id, code, content = line.split(" ", 3)[1:]
    assert image_id.startswith("im-") and code == "0" and content == "taken on the remote worker", line
