"""NVIDIA GPUs for OCI containers: what this worker has (from nvidia-smi), whether a function's gpu=
request can be met, and what a container needs to use the GPUs it is given (device nodes, driver
libraries, CUDA_VISIBLE_DEVICES). Detection runs a command through a small interface so tests use fakes."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from modal_proto import api_pb2

# Modal's gpu= names, and the marketing-name fragments nvidia-smi reports for them.
GPU_TYPES = {
    "T4": ("T4",),
    "L4": ("L4",),
    "A10G": ("A10G", "A10"),
    "A100": ("A100",),
    "A100-40GB": ("A100-SXM4-40GB", "A100-PCIE-40GB", "A100 40GB"),
    "A100-80GB": ("A100-SXM4-80GB", "A100-PCIE-80GB", "A100 80GB"),
    "L40S": ("L40S",),
    "H100": ("H100",),
    "H200": ("H200",),
    "B200": ("B200",),
}
DRIVER_LIB_PATTERN = re.compile(r"^\s*(libcuda\.so|libnvidia-[\w-]+\.so|libnvidia-ml\.so)\S*\s.*=>\s*(\S+)$")
# Function.experimental_options entry holding the rest of a gpu=[...] fallback list ("A100:1,T4:1").
FALLBACKS_KEY = "berth.gpu_fallbacks"
CONTROL_DEVICES = ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools")

Runner = Callable[[list[str]], str]  # argv → stdout; raises OSError/CalledProcessError when unavailable


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str  # as nvidia-smi reports it, e.g. "NVIDIA H100 80GB HBM3"
    uuid: str
    memory_mb: int

    @property
    def device(self) -> str:
        return f"/dev/nvidia{self.index}"


class GpuRequestError(ValueError):
    pass


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


def parse_request(spec: str) -> tuple[str, int]:
    """'H100', 'h100:2', 'A100-80GB:4', 'any' → (TYPE, count)."""
    name, _, count = spec.strip().partition(":")
    if count and not count.isdigit():
        raise GpuRequestError(f"Invalid GPU count in {spec!r}")
    gpu_type = name.upper()
    if gpu_type != "ANY" and gpu_type not in GPU_TYPES:
        raise GpuRequestError(f"Unknown GPU type {name!r}; known: any, {', '.join(GPU_TYPES)}")
    return gpu_type, int(count or 1)


def matches(gpu_type: str, gpu: Gpu) -> bool:
    if gpu_type == "ANY":
        return True
    name = gpu.name.upper()
    if gpu_type == "A100" and any(f in name for f in ("A100",)):
        return True
    if gpu_type == "A10G":
        return "A10G" in name or re.search(r"\bA10\b", name) is not None
    if gpu_type == "L4":
        return re.search(r"\bL4\b", name) is not None
    return any(fragment.upper() in name for fragment in GPU_TYPES[gpu_type])


def assign(gpu_type: str, count: int, free: list[Gpu]) -> list[Gpu]:
    """`count` free GPUs of `gpu_type`, or GpuRequestError saying why the request cannot be met now."""
    fitting = [g for g in free if matches(gpu_type, g)]
    if len(fitting) >= count:
        return fitting[:count]
    have = ", ".join(sorted({g.name for g in free})) or "none"
    raise GpuRequestError(
        f"No worker can run gpu={gpu_type}:{count} now: {len(fitting)} matching GPU(s) free (free GPUs: {have})"
    )


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


def requested(gpu_config_type: str, count: int) -> tuple[str, int] | None:
    """A function's GPUConfig (type name, count) as a request; None when it asks for no GPU."""
    if not gpu_config_type and count <= 0:
        return None
    return parse_request(f"{gpu_config_type or 'any'}:{max(count, 1)}")


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


def function_requests(fn: api_pb2.Function) -> list[tuple[str, int]]:
    """A function's GPU requests, best first: its own gpu_config, then the fallbacks of a gpu=[...]
    definition; empty for a CPU function."""
    first = requested(fn.resources.gpu_config.gpu_type, fn.resources.gpu_config.count)
    out = [first] if first is not None else []
    for item in filter(None, (s.strip() for s in fn.experimental_options.get(FALLBACKS_KEY, "").split(","))):
        req = parse_request(item)
        if req not in out:
            out.append(req)
    return out


def fallbacks_option(ranked: list[api_pb2.Function]) -> str:
    """The FALLBACKS_KEY value for the lower-ranked alternatives of a gpu=[...] definition."""
    configs = [f.resources.gpu_config for f in ranked]
    return ",".join(f"{c.gpu_type or 'ANY'}:{max(c.count, 1)}" for c in configs if c.gpu_type or c.count)


def visible_devices_env(gpus: list[Gpu]) -> dict[str, str]:
    uuids = ",".join(g.uuid for g in gpus)
    return {"CUDA_VISIBLE_DEVICES": uuids, "NVIDIA_VISIBLE_DEVICES": uuids}
