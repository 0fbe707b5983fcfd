"""The worker's side of sandboxes: output kept for re-reading from any offset, stdin written once per offset,
the command router's grant checks, and a sandbox ended at its timeout, on the process runtime's real
subprocesses and a real grpclib router on loopback."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from modal_proto import task_command_router_pb2 as sr
from modal_proto.task_command_router_grpc import TaskCommandRouterStub

from berth.domain.spec import ReadinessProbe, SandboxSpec, TaskSpec
from berth.grants import ISSUER
from berth.worker.agent import LocalWorker
from berth.worker.execs import OrderedStdin, OutputBuffer, StdinOutOfOrder
from berth.worker.files import LocalFiles
from berth.worker.router import ROUTER_AUDIENCE
from berth.worker.runtime.process import ProcessRuntime
from berth.workers.port import SANDBOX_TIMEOUT


async def test_output_nobody_started_reading_is_not_drained_until_a_reader_hands_it_on() -> None:
    """An exec's wait holds its answer for a reader that has yet to attach (`modal container exec` starts one
    with the exec and exits when the wait returns): output finished before it attached was lost."""
    buffer = OutputBuffer()
    await buffer.append(b"in-container\n")
    await buffer.close()
    assert not buffer.drained
    waited = asyncio.create_task(buffer.until_drained(5.0))
    await asyncio.sleep(0.05)
    assert not waited.done()
    got = [chunk async for _, chunk in buffer.read_from(0)]  # the late reader
    await asyncio.wait_for(waited, 1.0)
    assert got == [b"in-container\n"] and buffer.drained
    empty = OutputBuffer()
    await empty.close()
    assert empty.drained  # nothing to hand on


async def test_output_is_kept_so_a_reader_can_start_again_from_any_offset() -> None:
    buffer = OutputBuffer()
    await buffer.append(b"hello ")
    seen: list[tuple[int, bytes]] = []

    async def read(offset: int) -> None:
        async for item in buffer.read_from(offset):
            seen.append(item)

    reader = asyncio.create_task(read(0))
    await asyncio.sleep(0.01)
    await buffer.append(b"world")
    await buffer.close()
    await reader
    assert b"".join(chunk for _, chunk in seen) == b"hello world"
    again = [item async for item in buffer.read_from(6)]
    assert again == [(6, b"world")]


async def test_stdin_written_again_at_the_same_offset_is_written_once() -> None:
    class Sink:
        def __init__(self) -> None:
            self.data = b""

        def write(self, data: bytes) -> None:
            self.data += data

        async def drain(self) -> None:
            pass

        def close(self) -> None:
            pass

    sink = Sink()
    stdin = OrderedStdin(sink)  # type: ignore[arg-type]
    await stdin.write(0, b"abc", eof=False)
    await stdin.write(0, b"abc", eof=False)  # a retry of the same write
    await stdin.write(2, b"cde", eof=False)  # overlaps what was written: only "de" is new
    with pytest.raises(StdinOutOfOrder):
        await stdin.write(10, b"x", eof=False)
    await stdin.write(5, b"", eof=True)
    assert sink.data == b"abcde" and stdin.written == 5 and stdin.closed


@pytest.fixture
async def sandbox_worker(tmp_path: Path) -> AsyncIterator[tuple[LocalWorker, Ed25519PrivateKey, list[int]]]:
    exits: list[int] = []

    async def on_exit(spec: TaskSpec, code: int) -> None:
        exits.append(code)

    worker = LocalWorker(ProcessRuntime(LocalFiles(tmp_path)), tmp_path, lambda *a: None, on_exit, LocalFiles(tmp_path))
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    worker.trust_grants(public)
    yield worker, key, exits
    await worker.shutdown(1.0)


def _spec(task_id: str, timeout_s: int = 300) -> TaskSpec:
    sandbox = SandboxSpec("sb-test", ("sleep", "600"), timeout_s=timeout_s)
    return TaskSpec(task_id, "", "ap-1", b"", "unix:///nowhere", "secret", sandbox=sandbox)


def _grant(key: Ed25519PrivateKey, task_id: str, ttl: float = 60) -> str:
    now = time.time()
    claims = {"iss": ISSUER, "aud": ROUTER_AUDIENCE, "iat": int(now), "exp": int(now + ttl), "task_id": task_id}
    return jwt.encode(claims, key, algorithm="EdDSA")


async def test_router_runs_execs_for_a_valid_grant_and_refuses_others(
    sandbox_worker: tuple[LocalWorker, Ed25519PrivateKey, list[int]],
) -> None:
    worker, key, _ = sandbox_worker
    await worker.start(_spec("ta-oneV"))
    await worker.start(_spec("ta-twoV"))
    url = worker.router_url("ta-oneV")
    assert url is not None and url.startswith("http://127.0.0.1:")
    host, port = url.removeprefix("http://").split(":")
    channel = Channel(host, int(port))
    stub = TaskCommandRouterStub(channel)
    try:
        grant = {"authorization": f"Bearer {_grant(key, 'ta-oneV')}"}
        start = sr.TaskExecStartRequest(task_id="ta-oneV", exec_id="e1", command_args=["sh", "-c", "printf abcdef"])
        await stub.TaskExecStart(start, metadata=grant)
        done = await stub.TaskExecWait(sr.TaskExecWaitRequest(task_id="ta-oneV", exec_id="e1"), metadata=grant)
        assert done.code == 0
        read = sr.TaskExecStdioReadRequest(task_id="ta-oneV", exec_id="e1", offset=3)
        chunks = await stub.TaskExecStdioRead(read, metadata=grant)
        assert b"".join(c.data for c in chunks) == b"def"  # a reconnect re-reads from its offset
        refused = {
            "other task": (sr.TaskExecPollRequest(task_id="ta-twoV", exec_id="e1"), grant),
            "expired": (
                sr.TaskExecPollRequest(task_id="ta-oneV", exec_id="e1"),
                {"authorization": f"Bearer {_grant(key, 'ta-oneV', ttl=-5)}"},
            ),
            "forged": (
                sr.TaskExecPollRequest(task_id="ta-oneV", exec_id="e1"),
                {"authorization": f"Bearer {_grant(Ed25519PrivateKey.generate(), 'ta-oneV')}"},
            ),
        }
        for why, (request, metadata) in refused.items():
            with pytest.raises(GRPCError) as err:
                await stub.TaskExecPoll(request, metadata=metadata)
            assert err.value.status == Status.UNAUTHENTICATED, why
        with pytest.raises(GRPCError) as unserved:
            await stub.TaskContainerList(sr.TaskContainerListRequest(task_id="ta-oneV"), metadata=grant)
        assert unserved.value.status == Status.UNIMPLEMENTED and "TaskContainerList" in str(unserved.value.message)
        with pytest.raises(GRPCError) as refused_by_name:  # what the client offers and Berth does not do yet
            await stub.TaskSnapshotMemory(sr.TaskSnapshotMemoryRequest(task_id="ta-oneV"), metadata=grant)
        assert refused_by_name.value.status == Status.INVALID_ARGUMENT
        assert "Sandbox._experimental_snapshot()" in str(refused_by_name.value.message)
    finally:
        channel.close()


async def test_a_sandbox_past_its_timeout_is_ended_with_the_timeout_code(
    sandbox_worker: tuple[LocalWorker, Ed25519PrivateKey, list[int]],
) -> None:
    worker, _, exits = sandbox_worker
    await worker.start(_spec("ta-shortV", timeout_s=1))
    for _ in range(100):
        if exits:
            break
        await asyncio.sleep(0.1)
    assert exits == [SANDBOX_TIMEOUT]
    assert worker.free_slots() == worker.slots  # its slot is free again


async def test_wait_until_ready_answers_when_the_probe_first_succeeds_times_out_or_sees_the_exit(
    sandbox_worker: tuple[LocalWorker, Ed25519PrivateKey, list[int]], tmp_path: Path
) -> None:
    """On the process runtime (the host's network and files): an exec probe for a file that appears later, and
    a TCP probe of a port nothing listens on, which times out until the sandbox exits."""
    worker, key, _ = sandbox_worker
    flag = tmp_path / "ready-flag"
    probe = ReadinessProbe(exec_argv=("test", "-f", str(flag)), interval_ms=50)
    command = ("sh", "-c", f"sleep 0.5; touch {flag}; sleep 600")
    await worker.start(replace(_spec("ta-readyV"), sandbox=SandboxSpec("sb-r", command, readiness_probe=probe)))
    with socket.socket() as unused:  # a port nobody listens on
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    never = SandboxSpec("sb-n", ("sleep", "1.5"), readiness_probe=ReadinessProbe(tcp_port=port, interval_ms=50))
    await worker.start(replace(_spec("ta-neverV"), sandbox=never))
    await worker.start(_spec("ta-plainV"))
    host, port_text = (worker.router_url("ta-readyV") or "").removeprefix("http://").split(":")
    channel = Channel(host, int(port_text))
    stub = TaskCommandRouterStub(channel)

    async def wait_ready(task_id: str, timeout: float) -> float:
        grant = {"authorization": f"Bearer {_grant(key, task_id)}"}
        request = sr.SandboxWaitUntilReadyTcrRequest(task_id=task_id, timeout=timeout)
        return float((await stub.SandboxWaitUntilReady(request, metadata=grant)).ready_at)

    try:
        started = time.time()
        ready_at = await wait_ready("ta-readyV", 30)
        assert flag.exists() and started < ready_at <= time.time()
        assert await wait_ready("ta-readyV", 1) == ready_at  # ready once, ready for good
        with pytest.raises(GRPCError) as timed_out:
            await wait_ready("ta-neverV", 0.3)
        assert timed_out.value.status == Status.DEADLINE_EXCEEDED
        with pytest.raises(GRPCError) as exited:  # still waiting when the sandbox exits
            await wait_ready("ta-neverV", 30)
        assert exited.value.status == Status.FAILED_PRECONDITION and "exited" in str(exited.value.message)
        with pytest.raises(GRPCError) as no_probe:
            await wait_ready("ta-plainV", 1)
        assert no_probe.value.status == Status.INVALID_ARGUMENT
    finally:
        channel.close()
