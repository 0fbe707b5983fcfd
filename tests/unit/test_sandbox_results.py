"""What a sandbox's exit becomes for the client (its GenericResult, hence `returncode`), and which create
arguments are refused by name."""

from __future__ import annotations

import pytest
from modal_proto import api_pb2

from berth.domain.spec import ReadinessProbe
from berth.errors import InvalidArgument
from berth.scheduling.sandbox_options import readiness_probe
from berth.scheduling.sandboxes import (
    SandboxManager,
    SandboxRecord,
    _check_supported,
    exit_result,
    new_sandbox_id,
    new_sandbox_task_id,
)
from berth.services.notify import Notifier
from berth.store.records import TaskRecord
from berth.workers.port import SANDBOX_IDLE, SANDBOX_TIMEOUT, WORKER_LOST

GS = api_pb2.GenericResult


@pytest.mark.parametrize(
    ("code", "reason", "status", "exitcode"),
    [
        (0, None, GS.GENERIC_STATUS_SUCCESS, 0),
        (3, None, GS.GENERIC_STATUS_FAILURE, 3),
        (SANDBOX_TIMEOUT, None, GS.GENERIC_STATUS_TIMEOUT, 0),
        (SANDBOX_IDLE, None, GS.GENERIC_STATUS_TIMEOUT, 0),
        (WORKER_LOST, None, GS.GENERIC_STATUS_TERMINATED, 0),
        (137, "app stopped", GS.GENERIC_STATUS_TERMINATED, 0),
    ],
)
def test_an_exit_becomes_the_result_the_client_reads_its_returncode_from(
    code: int, reason: str | None, status: int, exitcode: int
) -> None:
    result = exit_result(code, reason, timeout_s=5)
    assert result.status == status and result.exitcode == exitcode


def test_sandbox_ids_do_not_look_like_v1_ids_and_task_ids_carry_the_v2_marker() -> None:
    sandbox_id, task_id = new_sandbox_id(), new_sandbox_task_id()
    assert sandbox_id.startswith("sb-") and len(sandbox_id) != 3 + 22  # modal's _is_v1_sandbox_id
    assert task_id.startswith("ta-") and task_id.endswith("V")  # modal's _is_v2_task_id


def test_options_berth_cannot_honour_are_refused_by_name() -> None:
    with pytest.raises(InvalidArgument, match="i6pn"):
        _check_supported(api_pb2.Sandbox(i6pn_enabled=True))
    _check_supported(api_pb2.Sandbox(block_network=True))  # supported: nothing raised
    _check_supported(api_pb2.Sandbox(readiness_probe=api_pb2.Probe(tcp_port=80)))
    allowlist = api_pb2.NetworkAccess(network_access_type=api_pb2.NetworkAccess.ALLOWLIST, allowed_cidrs=["10.0.0.0/8"])
    _check_supported(api_pb2.Sandbox(network_access=allowlist))  # berth.scheduling.sandbox_options checks it


def test_a_readiness_probe_becomes_the_workers_probe_and_a_probe_of_nothing_is_refused() -> None:
    tcp = api_pb2.Sandbox(readiness_probe=api_pb2.Probe(tcp_port=8080))
    assert readiness_probe(tcp) == ReadinessProbe(tcp_port=8080, interval_ms=100)
    command = api_pb2.Probe(exec_command=api_pb2.Probe.ExecCommand(argv=["test", "-f", "x"]), interval_ms=250)
    assert readiness_probe(api_pb2.Sandbox(readiness_probe=command)) == ReadinessProbe(
        exec_argv=("test", "-f", "x"), interval_ms=250
    )
    assert readiness_probe(api_pb2.Sandbox()) is None
    with pytest.raises(InvalidArgument, match="readiness_probe"):
        readiness_probe(api_pb2.Sandbox(readiness_probe=api_pb2.Probe()))


def test_a_record_round_trips_through_its_stored_form() -> None:
    record = SandboxRecord("sb-x", "ap-1", "ta-1V", 12.5, name="n", tags={"a": "b"}, image_id="im-1")
    record.result = exit_result(3, None, 300)
    back = SandboxRecord.from_json("sb-x", record.to_json())
    assert back.result == record.result and back.tags == {"a": "b"} and back.name == "n"


class _Store:
    """Objects and task records in memory: what another replica left in the shared database."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}
        self.tasks: dict[str, TaskRecord] = {}
        self.stops_requested: list[str] = []

    async def put_object(self, kind: str, object_id: str, body: bytes, now: float, **_: object) -> None:
        self.objects[(kind, object_id)] = body

    async def get_object(self, kind: str, object_id: str) -> bytes | None:
        return self.objects.get((kind, object_id))

    async def get_task(self, task_id: str) -> TaskRecord | None:
        return self.tasks.get(task_id)

    async def request_sandbox_stop(self, sandbox_id: str, now: float) -> bool:
        self.stops_requested.append(sandbox_id)
        return True


class _Tasks:
    on_sandbox_exit = None
    tasks: dict[str, object] = {}


class _Worker:
    def router_url(self, task_id: str) -> str | None:
        return None  # not on this replica's workers


class _Signer:
    def issue(self, subject: str, audience: str, ttl_s: float, **claims: object) -> str:
        return f"jwt-for-{claims['task_id']}"


class _Clock:
    def now(self) -> float:
        return 100.0

    def monotonic(self) -> float:
        return 100.0


def _manager(store: _Store) -> SandboxManager:
    return SandboxManager(
        store,  # type: ignore[arg-type]
        _Tasks(),  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        _Worker(),  # type: ignore[arg-type]
        _Signer(),  # type: ignore[arg-type]
        Notifier(),
        _Clock(),
        "unix:///nowhere",
    )


async def test_another_replicas_sandbox_is_running_while_its_task_is_and_terminated_after() -> None:
    store = _Store()
    record = SandboxRecord("sb-other", "ap-1", "ta-otherV", 1.0, router_url="http://10.0.0.7:4100")
    store.objects[("sandbox", "sb-other")] = record.to_json()
    store.tasks["ta-otherV"] = TaskRecord("ta-otherV", "", "ap-1", "running", "h", 1.0, replica_id="r2")
    manager = _manager(store)
    running = await manager.get("sb-other")
    assert running.result is None
    access = manager.router_access(running)  # its recorded router, with a grant any replica can sign
    assert access.url == "http://10.0.0.7:4100" and access.jwt == "jwt-for-ta-otherV"
    assert await manager.terminate("sb-other") is None  # asked of the replica that runs it, in the store
    assert store.stops_requested == ["sb-other"]
    store.tasks["ta-otherV"].ended_at, store.tasks["ta-otherV"].state = 9.0, "stopped"
    ended = await manager.wait("sb-other", 0.0)
    assert ended.result is not None and ended.result.status == GS.GENERIC_STATUS_TERMINATED
