"""The issue's proof of gang scheduling: torch.distributed (gloo, CPU) all-reduces across a cluster of 2 containers.

torch is the CPU build that machines of this kind keep on disk (tests/e2e/apps/clustered_torch.py's TORCH_WHEEL):
the image copies it in and installs it, so CI runs this. Where the file is missing it skips, unless
BERTH_TORCH_TEST=1 asks for it (then it fails); test_clustered.py runs the same all-reduce over plain sockets."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import APPS, BerthServer, call_remote

sys.path.insert(0, str(APPS))
from clustered_torch import TORCH_WHEEL  # noqa: E402

pytestmark = [
    pytest.mark.timeout(1200),
    pytest.mark.skipif(
        not Path(TORCH_WHEEL).is_file() and os.environ.get("BERTH_TORCH_TEST") != "1",
        reason=f"needs torch's CPU build at {TORCH_WHEEL} (BERTH_TORCH_WHEEL names another)",
    ),
]


def test_torch_distributed_gloo_all_reduce_sums_across_two_containers(berth_oci: BerthServer) -> None:
    assert call_remote(berth_oci, "clustered_torch", "gloo_all_reduce") == 3.0  # 1 + 2
