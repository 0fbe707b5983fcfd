"""gpu= requests against what this worker reports. On a machine without the requested GPU the call
stays queued (it neither fails nor runs on the wrong hardware) and the client is told why; a CPU
function of the same app runs meanwhile. On a machine with NVIDIA GPUs (nvidia-smi present), a
gpu=["T4", "any"] request takes the fallback and runs with CUDA_VISIBLE_DEVICES naming its GPU."""

from __future__ import annotations

import ast
import shutil
import subprocess
from typing import Any

import pytest

from tests.e2e.conftest import BerthServer, modal

HAS_GPU = shutil.which("nvidia-smi") is not None
GPU_NAMES = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout if HAS_GPU else ""


def _result(output: str, prefix: str) -> dict[str, Any]:
    lines = [line for line in output.splitlines() if line.startswith(prefix)]
    assert lines, output
    return dict(ast.literal_eval(lines[-1].removeprefix(prefix).strip()))


@pytest.mark.skipif("T4" in GPU_NAMES, reason="needs a worker without a T4")
def test_a_gpu_no_worker_has_stays_queued_and_says_why(berth: BerthServer) -> None:
    run = modal(berth, "run", "gpu_app.py", "--wait", "6", "--want", "T4", timeout=240)
    assert run.returncode == 0, run.output
    assert "STILL QUEUED T4" in run.stdout, run.output
    assert "Waiting for gpu=T4: no worker has such a GPU" in run.output, run.output
    # the CPU function of the same app was not held up, and saw no GPU
    assert _result(run.stdout, "CPU ")["visible"] is None


@pytest.mark.skipif(HAS_GPU, reason="needs a worker without GPUs")
def test_a_fallback_list_waits_for_any_of_its_gpus(berth: BerthServer) -> None:
    run = modal(berth, "run", "gpu_app.py", "--wait", "4", "--want", "ranked", timeout=240)
    assert run.returncode == 0, run.output
    assert "STILL QUEUED ranked" in run.stdout, run.output
    assert "Waiting for gpu=T4 or ANY: no worker has such a GPU" in run.output, run.output


@pytest.mark.skipif(not HAS_GPU, reason="needs NVIDIA GPUs (run on a GPU machine)")
def test_a_gpu_function_gets_its_device(berth: BerthServer) -> None:
    run = modal(berth, "run", "gpu_app.py", "--wait", "120", "--want", "ranked", timeout=300)
    assert run.returncode == 0, run.output
    got = _result(run.stdout, "RESULT ranked ")
    assert got["visible"] and got["visible"].startswith("GPU-"), got
    assert "GPU 0" in got["smi"], got
    if got["cuda"] is not None:  # torch in the function sees exactly the one device it was given
        assert len(got["cuda"]) == 1, got
    assert _result(run.stdout, "CPU ")["visible"] is None
    if "H100" in GPU_NAMES:
        h100 = modal(berth, "run", "gpu_app.py", "--wait", "120", "--want", "H100", timeout=300)
        assert "RESULT H100" in h100.stdout, h100.output
