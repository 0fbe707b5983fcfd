"""GPU vocabulary shared by the control plane and the workers: Modal's gpu= type names, a function's
requests (with gpu=[...] fallbacks), and matching a request against GPUs by their reported names.
Pure logic: detection and device plumbing live in berth.worker.gpu."""

from __future__ import annotations

import re
from dataclasses import dataclass

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
# Function.experimental_options entry holding the rest of a gpu=[...] fallback list ("A100:1,T4:1").
FALLBACKS_KEY = "berth.gpu_fallbacks"


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


def requested(gpu_config_type: str, count: int) -> tuple[str, int] | None:
    """A function's GPUConfig (type name, count) as a request; None when it asks for no GPU."""
    if not gpu_config_type and count <= 0:
        return None
    return parse_request(f"{gpu_config_type or 'any'}:{max(count, 1)}")


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


def describe(requests: list[tuple[str, int]]) -> str:
    """gpu= as the user wrote it: "A100", "H100:2", alternatives joined by " or "."""
    return " or ".join(f"{t}:{n}" if n > 1 else t for t, n in requests)
