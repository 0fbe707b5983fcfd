"""NVIDIA GPUs for OCI containers: what this worker has (from nvidia-smi), whether a function's gpu=
request can be met, and what a container needs to use the GPUs it is given (device nodes, driver
libraries, CUDA_VISIBLE_DEVICES). Detection runs a command through a small interface so tests use fakes."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from berth.domain.gpu import Gpu, GpuRequestError, assign, matches

DRIVER_LIB_PATTERN = re.compile(r"^\s*(libcuda\.so|libnvidia-[\w-]+\.so|libnvidia-ml\.so)\S*\s.*=>\s*(\S+)$")
CONTROL_DEVICES = ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools")

Runner = Callable[[list[str]], str]  # argv → stdout; raises OSError/CalledProcessError when unavailable


def _run(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=10).stdout


def detect(run: Runner = _run) -> list[Gpu]:
    """The GPUs nvidia-smi reports; none when there is no driver."""
    if run is _run and shutil.which("nvidia-smi") is None:
        return []
    try:
        out = run(["nvidia-smi", "--query-gpu=index,name,uuid,memory.total", "--format=csv,noheader,nounits"])
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 4 and parts[0].isdigit():
            gpus.append(Gpu(int(parts[0]), parts[1], parts[2], int(float(parts[3] or 0))))
    return gpus


def driver_libraries(run: Runner = _run) -> list[str]:
    """Host paths of the NVIDIA user-space driver libraries, from the linker cache."""
    try:
        out = run(["ldconfig", "-p"])
    except (OSError, subprocess.SubprocessError):
        return []
    return [m.group(2) for line in out.splitlines() if (m := DRIVER_LIB_PATTERN.match(line))]


def container_devices(gpus: list[Gpu]) -> list[str]:
    """Device nodes a container with these GPUs needs: one per GPU plus the driver's control nodes."""
    return [g.device for g in gpus] + [d for d in CONTROL_DEVICES if Path(d).exists()]


class GpuPool:
    """The GPUs of this worker and which task holds which. A request is met from the free ones; a
    request that cannot be met now says why (no such GPU at all, or all of them busy)."""

    def __init__(self, gpus: list[Gpu]) -> None:
        self.gpus = list(gpus)
        self._held: dict[str, list[Gpu]] = {}

    def _free(self) -> list[Gpu]:
        busy = {g.uuid for held in self._held.values() for g in held}
        return [g for g in self.gpus if g.uuid not in busy]

    def blocker(self, candidates: list[tuple[str, int]]) -> str | None:
        """None when one of the candidate requests (a fallback list, best first) fits now, else why not."""
        if not candidates or any(len([g for g in self._free() if matches(t, g)]) >= n for t, n in candidates):
            return None
        asked = " or ".join(f"{t}:{n}" if n > 1 else t for t, n in candidates)
        have = ", ".join(sorted({g.name for g in self.gpus})) or "no GPU"
        if not any(len([g for g in self.gpus if matches(t, g)]) >= n for t, n in candidates):
            return f"Waiting for gpu={asked}: no worker has such a GPU (this worker has {have}); the call stays queued"
        return f"Waiting for gpu={asked}: all matching GPUs are in use; the call stays queued until one is free"

    def take(self, task_id: str, candidates: list[tuple[str, int]]) -> list[Gpu]:
        """GPUs for the first candidate that fits; GpuRequestError when none does."""
        for gpu_type, count in candidates:
            try:
                self._held[task_id] = assign(gpu_type, count, self._free())
            except GpuRequestError:
                continue
            return self._held[task_id]
        raise GpuRequestError(self.blocker(candidates) or "no GPU requested")

    def release(self, task_id: str) -> None:
        self._held.pop(task_id, None)


def visible_devices_env(gpus: list[Gpu]) -> dict[str, str]:
    uuids = ",".join(g.uuid for g in gpus)
    return {"CUDA_VISIBLE_DEVICES": uuids, "NVIDIA_VISIBLE_DEVICES": uuids}
