"""Every RPC of the 1.6.4 client, fuzzed against a real Berth server: without a token, with a wrong one, with
malformed bodies, and with Hypothesis-drawn requests full of extreme values. The server must answer each
with a proper gRPC status (never INTERNAL, never a traceback), keep serving, and keep its memory bounded.

CI runs a seeded, short version (BERTH_FUZZ_EXAMPLES per RPC, default 2); `make reliability` runs the
full one (about 10,000 requests) and writes the figures to docs/reliability.md."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from grpclib.client import Channel
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from tests.e2e.conftest import BerthServer, start_server, stop_server
from tests.reliability.fuzz import Outcome, RawCodec, Rpc, Tally, judge, messages, raw_requests, rpcs, send

EXAMPLES = int(os.environ.get("BERTH_FUZZ_EXAMPLES", "2"))
SEED = int(os.environ.get("BERTH_FUZZ_SEED", "20261201"))
TIMEOUT_S = float(os.environ.get("BERTH_FUZZ_TIMEOUT_S", "4"))
UNAUTHENTICATED_RPCS = {"ClientHello", "TokenFlowCreate", "TokenFlowWait"}
ALL = rpcs()

pytestmark = pytest.mark.timeout(1800)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BerthServer]:
    """A server of its own: the fuzzer deletes, stops and renames whatever its requests name."""
    server = start_server(tmp_path_factory.mktemp("fuzz") / "data")
    yield server
    stop_server(server)


_ENVS: dict[int, dict[str, str]] = {}


def metadata(server: BerthServer, secret: str | None = None, with_token: bool = True) -> dict[str, str]:
    md = {"x-modal-client-type": "1", "x-modal-client-version": "1.6.4"}
    if with_token:
        env = _ENVS.get(server.port) or _ENVS.setdefault(server.port, server.env)  # `berth env` runs once
        md["x-modal-token-id"] = env["MODAL_TOKEN_ID"]
        md["x-modal-token-secret"] = secret if secret is not None else env["MODAL_TOKEN_SECRET"]
    return md


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def alive(server: BerthServer) -> bool:
    async def hello() -> bool:
        ch = Channel("127.0.0.1", server.port)
        try:
            rpc = next(r for r in ALL if r.name == "ClientHello")
            out = await send(ch, rpc, rpc.request(), metadata(server), 10)
            return out.status == "OK"
        finally:
            ch.close()

    return asyncio.run(hello())


def run(coro_factory):  # type: ignore[no-untyped-def]
    return asyncio.run(coro_factory())


def test_no_token_and_a_wrong_token_are_refused_by_every_rpc(target: BerthServer) -> None:
    async def probe() -> list[str]:
        ch = Channel("127.0.0.1", target.port)
        wrong = []
        try:
            for rpc in ALL:
                for label, md in (
                    ("no token", metadata(target, with_token=False)),
                    ("wrong token", metadata(target, secret="not-the-secret")),
                ):
                    out = await send(ch, rpc, rpc.request(), md, TIMEOUT_S)
                    expected = {"UNAUTHENTICATED", "UNIMPLEMENTED"}
                    if rpc.name in UNAUTHENTICATED_RPCS and label == "no token":
                        continue
                    if out.status not in expected or judge(out):
                        wrong.append(f"{rpc.name} with {label}: {out.status} {out.message[:120]}")
        finally:
            ch.close()
        return wrong

    assert run(probe) == []
    assert alive(target)


def test_malformed_bodies_get_a_proper_status(target: BerthServer) -> None:
    from modal_proto import api_pb2

    other = api_pb2.FunctionPutOutputsRequest(outputs=[api_pb2.FunctionPutOutputsItem(input_id="in-x")])

    async def probe() -> Tally:
        ch = Channel("127.0.0.1", target.port, codec=RawCodec())
        tally = Tally()
        try:
            for i, rpc in enumerate(ALL):
                for what, body in raw_requests(rpc, other, SEED + i):
                    started = time.monotonic()
                    out = await send(ch, rpc, body, metadata(target), TIMEOUT_S)
                    tally.add(rpc.name, out, time.monotonic() - started, what)
        finally:
            ch.close()
        return tally

    tally = run(probe)
    assert tally.defects == []
    assert alive(target)


def _fuzz_one(target: BerthServer, rpc: Rpc, tally: Tally, examples: int) -> None:
    md = metadata(target)

    @seed(SEED)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        derandomize=False,
    )
    @given(st.data())
    def check(data: st.DataObject) -> None:
        request = data.draw(messages(rpc.request.DESCRIPTOR))

        async def once() -> None:
            ch = Channel("127.0.0.1", target.port)
            try:
                started = time.monotonic()
                out = await send(ch, rpc, request, md, TIMEOUT_S)
                tally.add(rpc.name, out, time.monotonic() - started, "drawn request")
            finally:
                ch.close()

        asyncio.run(once())

    check()


def fuzz_all(target: BerthServer, examples: int) -> tuple[Tally, float, float]:
    """Drawn requests for every RPC; returns the tally and the server's RSS (MiB) before and after."""
    before = rss_mib(target.proc.pid)
    tally = Tally()
    for rpc in ALL:
        _fuzz_one(target, rpc, tally, examples)
    return tally, before, rss_mib(target.proc.pid)


def test_drawn_requests_with_extreme_values_get_a_proper_status_and_memory_stays_bounded(target: BerthServer) -> None:
    tally, before, after = fuzz_all(target, EXAMPLES)
    assert tally.defects == [], "\n".join(tally.defects[:40])
    assert tally.sent >= len(ALL)  # Hypothesis draws fewer where a request type has few values (Empty: one)
    assert alive(target)
    assert after - before < 300, f"the server's memory grew from {before:.0f} MiB to {after:.0f} MiB"


# Defects the fuzzer found, pinned.
def test_an_error_quoting_a_huge_field_keeps_the_connection(target: BerthServer) -> None:
    """The error message travels in a header: one quoting a 70,000-character environment name made the
    client's HTTP/2 stack drop the connection instead of reporting NOT_FOUND."""
    from modal_proto import api_pb2

    rpc = next(r for r in ALL if r.name == "DictList")
    out = run(lambda: _one(target, rpc, api_pb2.DictListRequest(environment_name="x" * 70_000)))
    assert out.status == "NOT_FOUND" and len(out.message) <= 1000, out


def test_metrics_over_centuries_in_one_second_buckets_are_refused_not_built(target: BerthServer) -> None:
    """A one-second bucket over a range of centuries built a list of billions of floats: the server grew to
    23 GB and the kernel killed it."""
    from google.protobuf.timestamp_pb2 import Timestamp
    from modal_proto import api_pb2

    rpc = next(r for r in ALL if r.name == "MetricsGetInfo")
    req = api_pb2.MetricsGetInfoRequest(since=Timestamp(seconds=0), until=Timestamp(seconds=2**40), bucket_secs=1)
    before = rss_mib(target.proc.pid)
    out = run(lambda: _one(target, rpc, req))
    assert out.status == "INVALID_ARGUMENT" and "buckets" in out.message, out
    assert rss_mib(target.proc.pid) - before < 100


def test_a_body_announced_over_the_limit_is_refused_before_it_is_read(target: BerthServer) -> None:
    from modal_proto import api_pb2

    rpc = next(r for r in ALL if r.name == "MountBatchedCheckExistence")
    req = api_pb2.MountBatchedCheckExistenceRequest(sha256_hex_hashes=["x" * 70_000] * 1_000)  # 70 MB
    before = rss_mib(target.proc.pid)
    out = run(lambda: _one(target, rpc, req))
    assert out.status == "RESOURCE_EXHAUSTED" and "exceeds the limit" in out.message, out
    assert rss_mib(target.proc.pid) - before < 100


@pytest.mark.parametrize("rpc_name", ["WorkspaceBillingSummary", "WorkspaceBillingReport", "EnvironmentBillingSummary"])
def test_a_timestamp_protobuf_cannot_represent_is_invalid_not_internal(target: BerthServer, rpc_name: str) -> None:
    """Nanos outside [0, 1e9) made ToDatetime raise ValueError: INTERNAL, found by the full fuzz run."""
    from google.protobuf.timestamp_pb2 import Timestamp

    rpc = next(r for r in ALL if r.name == rpc_name)
    req = rpc.request(start_timestamp=Timestamp(seconds=0, nanos=-1))
    out = run(lambda: _one(target, rpc, req))
    assert out.status == "INVALID_ARGUMENT" and "Invalid timestamp" in out.message, out


async def _one(server: BerthServer, rpc: Rpc, request: object) -> Outcome:
    ch = Channel("127.0.0.1", server.port)
    try:
        return await send(ch, rpc, request, metadata(server), 30)  # type: ignore[arg-type]
    finally:
        ch.close()
