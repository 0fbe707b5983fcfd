"""The issue's proof of gang scheduling: torch.distributed (gloo, CPU) all-reduces across a cluster of 2 containers.

torch from PyPI pulls its CUDA libraries (about 2.5 GB, and no CPU-only build is on PyPI for x86-64), which does
not fit CI's budget: this test runs under `make test-torch` (BERTH_TORCH_TEST=1). CI runs the same all-reduce
over plain sockets (test_clustered.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import BerthServer, call_remote, start_server, stop_server

pytestmark = [
    pytest.mark.timeout(1800),
    pytest.mark.skipif(os.environ.get("BERTH_TORCH_TEST") != "1", reason="needs torch (about 2.5 GB): make test-torch"),
]


@pytest.fixture(scope="module")
def berth_crun(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BerthServer]:
    if os.geteuid() != 0:
        pytest.skip("clustered functions need the crun runtime, which needs root")
    server = start_server(tmp_path_factory.mktemp("berth-torch") / "data", extra_args=["--runtime", "crun"])
    yield server
    stop_server(server)


def test_torch_distributed_gloo_all_reduce_sums_across_two_containers(berth_crun: BerthServer) -> None:
    assert call_remote(berth_crun, "clustered_torch", "gloo_all_reduce") == 3.0  # 1 + 2
