"""What crosses the worker port survives JSON unchanged, and placement picks workers by their room."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from modal_proto import api_pb2

from berth.domain.codec import decode, encode
from berth.domain.gpu import Gpu
from berth.domain.images import ContextFile, FunctionBuild, ImageBuildSpec, RegistryCredentials
from berth.domain.spec import (
    BindMount,
    EgressAllowlist,
    MountedFile,
    ReadinessProbe,
    SandboxSpec,
    TaskSpec,
    WorkerInventory,
)
from berth.workers.hub import WorkerHub, _Member


def _roundtrip(value: Any) -> Any:
    return decode(type(value), json.loads(json.dumps(encode(value))))


def test_a_task_spec_survives_json_with_bytes_paths_tuples_and_gpus() -> None:
    spec = TaskSpec(
        "ta-1", "fu-1", "ap-1", b"\x00\xffargs", "http://server", "secret", {"A": "1"},
        [MountedFile("/root/app.py", "ab" * 32, 0o755)], [BindMount(Path("/v"), "/root/v", True)],
        256, 0.5, "im-1", (("H100", 2), ("ANY", 1)), (Gpu(0, "NVIDIA H100", "GPU-a", 81559),),
    )  # fmt: skip
    assert _roundtrip(spec) == spec


def test_a_sandbox_spec_survives_json_with_its_probe_and_allowlist() -> None:
    probe = ReadinessProbe(exec_argv=("test", "-f", "/tmp/ready"), interval_ms=250)
    allow = EgressAllowlist(("203.0.113.0/24",), ("pypi.org",))
    sandbox = SandboxSpec("sb-1", ("sleep", "60"), readiness_probe=probe, egress=allow)
    spec = TaskSpec("ta-1V", "", "ap-1", b"", "http://server", "secret", sandbox=sandbox)
    assert _roundtrip(spec) == spec
    plain = TaskSpec("ta-2V", "", "ap-1", b"", "http://server", "secret", sandbox=SandboxSpec("sb-2"))
    assert _roundtrip(plain).sandbox.egress is None


def test_an_image_build_spec_survives_json_with_its_protobufs() -> None:
    fn = FunctionBuild(api_pb2.Function(function_name="setup"), api_pb2.BuildFunction(definition="def setup(): ..."))
    spec = ImageBuildSpec(
        "im-1", "key", ["FROM base", "RUN echo hi"], {"base": "im-0"}, [ContextFile("/a.txt", "c" * 64)],
        {"TOKEN": "x"}, {"V": "1"}, True, RegistryCredentials(1, {"REGISTRY_USERNAME": "u"}), fn,
    )  # fmt: skip
    back = _roundtrip(spec)
    assert back == spec
    assert back.function.function_def.function_name == "setup"


def test_data_of_the_wrong_shape_is_refused() -> None:
    with pytest.raises(ValueError):
        decode(WorkerInventory, {"worker_id": "w", "slots": "many", "cpu": 1, "memory_mb": 1, "runtime": "p",
                                 "builds_images": False})  # fmt: skip


def _hub_with(*inventories: WorkerInventory) -> WorkerHub:
    async def never(token: str) -> bool:
        return False

    async def on_exit(spec: TaskSpec, code: int) -> None:
        pass

    hub = WorkerHub(lambda spec, fd, text: None, on_exit, never)
    for inv in inventories:
        hub._members[inv.worker_id] = _Member(inv, ws=None)  # type: ignore[arg-type]
    return hub


def test_placement_waits_for_a_worker_and_names_what_no_worker_has() -> None:
    assert "none is connected" in (_hub_with().placement_blocker([], 0) or "")
    h100 = Gpu(0, "NVIDIA H100 80GB HBM3", "GPU-a", 81559)
    hub = _hub_with(WorkerInventory("w1", 4, 2.0, 1024, "process", False, [h100]))
    assert hub.placement_blocker([], 512) is None
    assert "2048 MiB" in (hub.placement_blocker([], 2048) or "")
    assert "4 CPUs" in (hub.placement_blocker([], 0, 4.0) or "")
    assert hub.placement_blocker([], 0, 1.5) is None
    assert "no connected worker has such a GPU" in (hub.placement_blocker([("T4", 1)], 0) or "")
    assert hub.placement_blocker([("H100", 1)], 0) is None
    assert hub.free_slots() == 4
