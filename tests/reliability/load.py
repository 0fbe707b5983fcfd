"""Load on one real `berth up`, loopback only and bounded in count and time: a burst of concurrent web
requests, many `.remote()` callers at once, apps deployed and stopped in a loop, and slow clients holding
connections open on the web front door and the gRPC port (slowloris). Each run reports its requests,
errors, latency p50/p99, and the server's RSS and open fds before and after (which must come back).

tests/reliability/test_load.py runs it small and seeded in CI; `make reliability` at full size."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from tests.e2e.conftest import APPS, BerthServer, modal

CLIENT = Path(__file__).with_name("load_client.py")


@dataclass(frozen=True)
class Sizes:
    web_requests: int
    remote_callers: int
    deploys: int
    slow_clients: int
    hold_s: float


CI = Sizes(web_requests=100, remote_callers=20, deploys=2, slow_clients=50, hold_s=3)
FULL = Sizes(web_requests=1000, remote_callers=200, deploys=50, slow_clients=500, hold_s=20)


@dataclass
class Gauge:
    rss_mib: float
    fds: int

    @classmethod
    def of(cls, pid: int) -> Gauge:
        rss = next(
            int(x.split()[1]) for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmRSS:")
        )
        return cls(rss / 1024, len(os.listdir(f"/proc/{pid}/fd")))


@dataclass
class Figures:
    name: str
    sent: int
    errors: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    before: Gauge | None = None
    after: Gauge | None = None
    note: str = ""

    def pct(self, q: int) -> float:
        if len(self.latencies) < 2:
            return self.latencies[0] * 1000 if self.latencies else 0.0
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[q - 1] * 1000


def settle(
    server: BerthServer, before: Gauge, fd_slack: int = 10, rss_slack_mib: float = 150, timeout: float = 60
) -> Gauge:
    """The server's gauge once its fds are back within `fd_slack` of before (or after `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        now = Gauge.of(server.proc.pid)
        if (
            now.fds <= before.fds + fd_slack and now.rss_mib <= before.rss_mib + rss_slack_mib
        ) or time.monotonic() > deadline:
            return now
        time.sleep(0.5)


def deploy_web(server: BerthServer) -> str:
    deployed = modal(server, "deploy", "front_door.py")
    assert deployed.returncode == 0, deployed.output
    port = re.findall(r"http://127\.0\.0\.1:(\d+)", deployed.stdout)[0]
    return f"http://127.0.0.1:{port}"


async def _web_burst(url: str, n: int) -> Figures:
    figures = Figures("concurrent web requests", n)
    connector = aiohttp.TCPConnector(limit=n)
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(i: int) -> None:
            started = time.monotonic()
            try:
                async with session.post(f"{url}/req/{i}", data=b"x" * 1024) as resp:
                    body = await resp.json(content_type=None)
                    if resp.status != 200 or body["path"] != f"/req/{i}" or body["body_bytes"] != 1024:
                        figures.errors.append(f"{i}: {resp.status} {str(body)[:200]}")
            except Exception as exc:
                figures.errors.append(f"{i}: {type(exc).__name__}: {exc}"[:300])
            figures.latencies.append(time.monotonic() - started)

        await asyncio.gather(*(one(i) for i in range(n)))
    return figures


def web_burst(server: BerthServer, url: str, n: int) -> Figures:
    asyncio.run(_web_burst(url, 2))  # the endpoint's container is up before the clock starts
    before = Gauge.of(server.proc.pid)
    figures = asyncio.run(_web_burst(url, n))
    figures.before, figures.after = before, settle(server, before)
    return figures


def _client(server: BerthServer, kind: str, n: int, timeout: float) -> Figures:
    name = "concurrent .remote() callers"
    before = Gauge.of(server.proc.pid)
    run = subprocess.run(
        [sys.executable, str(CLIENT), kind, str(n)],
        cwd=APPS,
        env=server.env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    figures = Figures(name, n, before=before)
    line = next((x for x in run.stdout.splitlines() if x.startswith("LOAD ")), None)
    if run.returncode != 0 or line is None:
        figures.errors.append(f"client exited {run.returncode}: {(run.stdout + run.stderr)[-2000:]}")
    else:
        out = json.loads(line.removeprefix("LOAD "))
        figures.latencies, figures.errors = out["latencies"], out["errors"]
    figures.after = settle(server, before)
    return figures


def remote_callers(server: BerthServer, n: int) -> Figures:
    return _client(server, "remote", n, 600)


def deploy_loop(server: BerthServer, n: int) -> Figures:
    """n apps deployed and stopped one after another with the CLI (`modal deploy`, `modal app stop`)."""
    before = Gauge.of(server.proc.pid)
    figures = Figures("apps deployed and stopped (CLI)", n, before=before)
    for i in range(n):
        started = time.monotonic()
        name = f"load-deploy-{i}"
        for args in (("deploy", "load_app.py", "--name", name), ("app", "stop", name, "--yes")):
            run = modal(server, *args, timeout=120)
            if run.returncode != 0:
                figures.errors.append(f"{' '.join(args)}: {run.output[-500:]}")
        figures.latencies.append(time.monotonic() - started)
    figures.after = settle(server, before)
    return figures


def _slow_socket(port: int, first: bytes) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(first)
    return s


async def _probe_web(url: str) -> float:
    started = time.monotonic()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        async with session.get(f"{url}/probe") as resp:
            assert resp.status == 200, resp.status
    return time.monotonic() - started


def _probe_grpc(server: BerthServer) -> float:
    from google.protobuf import empty_pb2
    from grpclib.client import Channel
    from modal_proto import api_grpc

    env = server.env
    md = {
        "x-modal-client-type": "1",
        "x-modal-client-version": "1.6.4",
        "x-modal-token-id": env["MODAL_TOKEN_ID"],
        "x-modal-token-secret": env["MODAL_TOKEN_SECRET"],
    }

    async def hello() -> float:
        ch = Channel("127.0.0.1", server.port)
        started = time.monotonic()
        try:
            await api_grpc.ModalClientStub(ch).ClientHello(empty_pb2.Empty(), metadata=md, timeout=30)
        finally:
            ch.close()
        return time.monotonic() - started

    return asyncio.run(hello())


def slowloris(server: BerthServer, url: str, n: int, hold_s: float) -> Figures:
    """n slow clients on the web port (a request head sent a byte at a time) and n on the gRPC port (half an
    HTTP/2 preface), held for hold_s while real requests on both ports are timed; then they all hang up."""
    web_port = int(url.rsplit(":", 1)[1])
    figures = Figures("slow clients holding connections (slowloris)", 2 * n)
    before = Gauge.of(server.proc.pid)
    held: list[socket.socket] = []
    try:
        for _ in range(n):
            held.append(_slow_socket(web_port, b"GET /slow HTTP/1.1\r\nHost: x\r\nX-Slow: "))
            held.append(_slow_socket(server.port, b"PRI * HTTP/2.0\r\n"))
        deadline = time.monotonic() + hold_s
        while time.monotonic() < deadline:
            for s in held:
                try:
                    s.send(b"a")  # one byte each round keeps a naive idle timer from firing
                except OSError:
                    pass  # the server let go of it: fine, that is a defence
            try:
                figures.latencies.append(asyncio.run(_probe_web(url)))
                figures.latencies.append(_probe_grpc(server))
            except Exception as exc:
                figures.errors.append(f"{type(exc).__name__}: {exc}"[:300])
            time.sleep(0.5)
        figures.note = f"{len(figures.latencies)} probe requests answered while held"
    finally:
        for s in held:
            s.close()
    figures.before, figures.after = before, settle(server, before)
    return figures


def run_all(server: BerthServer, sizes: Sizes) -> list[Figures]:
    url = deploy_web(server)
    return [
        web_burst(server, url, sizes.web_requests),
        remote_callers(server, sizes.remote_callers),
        deploy_loop(server, sizes.deploys),
        slowloris(server, url, sizes.slow_clients, sizes.hold_s),
    ]


def table(results: list[Figures]) -> list[str]:
    lines = [
        "| run | requests | errors | p50 | p99 | RSS before → after | fds before → after |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in results:
        assert f.before is not None and f.after is not None
        lines.append(
            f"| {f.name} | {f.sent:,} | {len(f.errors)} | {f.pct(50):.0f} ms | {f.pct(99):.0f} ms | "
            f"{f.before.rss_mib:.0f} → {f.after.rss_mib:.0f} MiB | {f.before.fds} → {f.after.fds} |"
        )
    return lines
