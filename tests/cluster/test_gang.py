"""Gang scheduling over several workers: a `@modal.clustered(size=2)` cluster whose members are too big for two
to share a worker (each asks for over half of a worker's memory) is placed on both crun workers at once, its
members all-reduce over the cluster's private link, which spans the two workers over VXLAN, an ordinary
container cannot reach a member's cluster address, and the link is gone from both workers once it ends."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.local_cluster import client_env, cluster_cmd
from tests.e2e.conftest import APPS, BIN

pytestmark = [
    pytest.mark.timeout(900),
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(shutil.which("crun") is None, reason="crun is not installed: run scripts/setup-host.sh"),
]

SPAN = """
import sys; sys.path.insert(0, '.')
import modal
from clustered import *

with app.run():
    with modal.Queue.ephemeral() as q:
        call = all_reduce_across.spawn(q)
        where = q.get(timeout=300)
        probes = [reach.remote(where["ipv6"]), reach.remote(where["ipv4"])]
        q.put("stop", partition="stop")
        result = call.get(timeout=300)
print("RESULT=" + repr((result, probes)))
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("gang-cluster")
    try:
        cluster_cmd("up", root, 2, runtime="crun")
        yield root
    finally:
        cluster_cmd("down", root, runtime="crun")


def _cluster_links(cluster: Path) -> list[str]:
    """The cluster bridges and VXLANs left in the workers' namespaces."""
    state = json.loads((cluster / "cluster.json").read_text())
    found = []
    for i in (1, 2):
        out = subprocess.run(["ip", "-n", f"{state['bridge']}-w{i}", "-o", "link"], capture_output=True, text=True)
        found += [
            f"w{i}: {line.split(':')[1].strip()}"
            for line in out.stdout.splitlines()
            if ": bk" in line or ": vk" in line
        ]
    return found


def test_a_cluster_no_worker_can_hold_spans_two_workers_and_all_reduces_over_its_link(cluster: Path) -> None:
    run = subprocess.run(
        [BIN / "python", "-c", textwrap.dedent(SPAN)],
        cwd=APPS,
        env=client_env(cluster),
        capture_output=True,
        text=True,
        timeout=600,
    )
    logs = (cluster / "server.log").read_text(errors="replace")[-4000:]
    assert run.returncode == 0, run.stdout + run.stderr + "\n--- server log ---\n" + logs
    line = [x for x in run.stdout.splitlines() if x.startswith("RESULT=")][-1]
    result, probes = ast.literal_eval(line.removeprefix("RESULT="))
    assert result["rank"] == 0 and result["rank_via_cluster"] == 0
    assert result["total"] == 10 + 20  # both ranks' values (and 4 MiB from rank 1), over the link between workers
    assert len(result["ips"]) == 2 and len(set(result["ips"])) == 2 and result["i6pn"] == result["ips"][0]
    assert len(result["ipv4s"]) == 2 and all(ip.startswith("10.") for ip in result["ipv4s"])
    assert len(result["container_ids"]) == 2
    assert result["mtu"] == 1500 - 50  # the link spans workers: VXLAN's headers come off the workers' MTU
    assert all(p.startswith("refused") for p in probes), probes  # an ordinary container, on a member's worker
    deadline = time.monotonic() + 60
    while _cluster_links(cluster) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _cluster_links(cluster) == []  # the bridge and the VXLAN went with the last member on each worker
