"""`make reliability`: the full RPC fuzz run, the full-size load runs and the chaos and attack tests, each
against fresh `berth up` servers, and their figures in docs/reliability.md.

    python scripts/reliability.py [--examples 40] [--seed N] [--only fuzz,load,chaos] [--no-write]

CI runs the same checks in a seeded, shorter size (tests/reliability/, BERTH_FUZZ_EXAMPLES=2; the load runs
small; the chaos tests as they are). The run fails (exit 1) on any defect: an INTERNAL or UNKNOWN status, a
traceback in a message, a dropped connection, an unserved RPC answered without its name, the server gone or
grown by more than 300 MiB, a failed load request, fds or memory that do not come back, or a failed test."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from grpclib.client import Channel  # noqa: E402
from modal_proto import api_pb2  # noqa: E402
from tests.e2e.conftest import start_server, stop_server  # noqa: E402
from tests.reliability import load  # noqa: E402
from tests.reliability import test_rpc_fuzz as fuzz_tests  # noqa: E402
from tests.reliability.fuzz import RawCodec, Tally, raw_requests, rpcs, send  # noqa: E402

DOC = ROOT / "docs" / "reliability.md"
BEGIN, END = "<!-- rpc-fuzz -->", "<!-- /rpc-fuzz -->"
# The tests whose faults and figures the chaos section reports (each notes them, tests/reliability/record.py).
CHAOS_TESTS = [
    "tests/e2e/test_restart.py",
    "tests/e2e/test_chaos.py",
    "tests/e2e/test_build_chaos.py",
    "tests/e2e/test_disk_full.py",
    "tests/e2e/test_front_door.py",
    "tests/e2e/test_security.py::test_volume_cli_paths_stay_inside_the_volume",
]


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] * 1000 if len(values) >= 2 else 0.0


async def _refusals(port: int, md_ok: dict[str, str], md_bad: dict[str, str], md_none: dict[str, str]) -> Tally:
    tally = Tally()
    ch = Channel("127.0.0.1", port)
    raw = Channel("127.0.0.1", port, codec=RawCodec())
    other = api_pb2.FunctionPutOutputsRequest(outputs=[api_pb2.FunctionPutOutputsItem(input_id="in-x")])
    try:
        for i, rpc in enumerate(rpcs()):
            for what, md in (("no token", md_none), ("wrong token", md_bad)):
                started = time.monotonic()
                out = await send(ch, rpc, rpc.request(), md, 4)
                tally.add(rpc.name, out, time.monotonic() - started, what)
            for what, body in raw_requests(rpc, other, 1000 + i):
                started = time.monotonic()
                out = await send(raw, rpc, body, md_ok, 4)
                tally.add(rpc.name, out, time.monotonic() - started, what)
    finally:
        ch.close()
        raw.close()
    return tally


def machine() -> str:
    load_avg = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    mem = next(int(x.split()[1]) for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal:"))
    return (
        f"Machine: {os.cpu_count()} CPUs, {mem / 1024**2:.0f} GiB, {platform.machine()}, kernel {platform.release()}, "
        f"Python {platform.python_version()}; load average at the start {load_avg}."
    )


def run_load() -> tuple[list[str], list[str]]:
    """The load runs at full size on a fresh server: the section's lines and the defects."""
    sizes = load.FULL
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="berth-load-") as tmp:
        server = start_server(Path(tmp) / "data")
        try:
            results = load.run_all(server, sizes)
        finally:
            stop_server(server)
    defects = []
    for f in results:
        defects += [f"{f.name}: {e}" for e in f.errors[:20]]
        assert f.before is not None and f.after is not None
        if f.after.fds > f.before.fds + 10 or f.after.rss_mib > f.before.rss_mib + 150:
            defects.append(f"{f.name}: the server did not come back: {f.before} → {f.after}")
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "<!-- load -->",
        f"## Load (`make reliability`, {when})",
        "",
        machine(),
        f"Loopback only, one `berth up` (process runtime). {sizes.web_requests} web requests at once to one ASGI "
        f"endpoint (1 KiB body each); {sizes.remote_callers} `.remote()` callers at once in one client; "
        f"{sizes.deploys} apps deployed and stopped with the CLI one after another; {sizes.slow_clients} slow "
        f"clients on the web port and as many on the gRPC port held for {sizes.hold_s:.0f} s while real requests on "
        "both are timed. RSS and fds are the server's, before the run and once it has settled after it.",
        "",
        *load.table(results),
        "",
        f"Wall time {time.monotonic() - started:.0f} s. CI runs the same at "
        f"{load.CI.web_requests}/{load.CI.remote_callers}/{load.CI.deploys}/{load.CI.slow_clients} "
        "(tests/reliability/test_load.py).",
        "<!-- /load -->",
    ]
    return lines, defects


def run_chaos() -> tuple[list[str], list[str]]:
    """The chaos and attack tests, with the figures each notes: the section's lines and the defects."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="berth-chaos-") as tmp:
        record = Path(tmp) / "record.jsonl"
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *CHAOS_TESTS],
            cwd=ROOT,
            env={**os.environ, "BERTH_RELIABILITY_RECORD": str(record)},
            capture_output=True,
            text=True,
        )
        notes = [json.loads(x) for x in record.read_text().splitlines()] if record.exists() else []
    summary = (run.stdout.strip().splitlines() or ["no output"])[-1]
    defects = [] if run.returncode == 0 else [f"chaos tests failed: {run.stdout[-3000:]}"]
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "<!-- chaos -->",
        f"## Faults and attacks (`make reliability`, {when})",
        "",
        machine(),
        "Each row is one test of " + ", ".join(f"`{t}`" for t in CHAOS_TESTS) + " against a real `berth up` with "
        "the stock modal CLI/SDK or raw sockets. Errors seen are what reached a caller, by design (a killed input "
        "without retries must fail, clearly).",
        "",
        "| fault or attack | faults injected | outputs checked | errors seen | outcome |",
        "|---|---|---|---|---|",
        *(f"| {n['test']} | {n['faults']} | {n['outputs_checked']} | {n['errors']} | {n['outcome']} |" for n in notes),
        "",
        f"pytest: {summary} (wall time {time.monotonic() - started:.0f} s).",
        "<!-- /chaos -->",
    ]
    return lines, defects


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=40, help="drawn requests per RPC (default 40)")
    parser.add_argument("--seed", type=int, default=int(os.environ.get("BERTH_FUZZ_SEED", "20261201")))
    parser.add_argument("--only", default="fuzz,load,chaos", help="which parts to run (default all)")
    parser.add_argument("--no-write", action="store_true", help="print the tables instead of writing the doc")
    args = parser.parse_args()
    parts = set(args.only.split(","))
    defects: list[str] = []
    for name, part in (("load", run_load), ("chaos", run_chaos)):
        if name in parts:
            lines, found = part()
            defects += found
            _emit("\n".join(lines), args.no_write)
    if "fuzz" in parts:
        defects += run_fuzz(args)
    for d in defects[:50]:
        print("DEFECT", d[:300], file=sys.stderr)
    return 1 if defects else 0


def run_fuzz(args: argparse.Namespace) -> list[str]:
    fuzz_tests.SEED = args.seed
    with tempfile.TemporaryDirectory(prefix="berth-reliability-") as tmp:
        server = start_server(Path(tmp) / "data")
        try:
            md_ok = fuzz_tests.metadata(server)
            md_bad = fuzz_tests.metadata(server, secret="not-the-secret")
            md_none = fuzz_tests.metadata(server, with_token=False)
            started = time.monotonic()
            refusals = asyncio.run(_refusals(server.port, md_ok, md_bad, md_none))
            drawn, before, after = fuzz_tests.fuzz_all(server, args.examples)
            elapsed = time.monotonic() - started
            alive = fuzz_tests.alive(server)
        finally:
            stop_server(server)
    defects = refusals.defects + drawn.defects
    if not alive:
        defects.append("the server stopped serving")
    if after - before > 300:
        defects.append(f"the server's memory grew from {before:.0f} to {after:.0f} MiB")
    statuses = {**refusals.by_status}
    for k, v in drawn.by_status.items():
        statuses[k] = statuses.get(k, 0) + v
    latencies = refusals.latencies + drawn.latencies
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        BEGIN,
        f"## RPC fuzzing (`make reliability`, {when})",
        "",
        f"Machine: {os.cpu_count()} CPUs, {platform.machine()}, Python {platform.python_version()}; "
        f"seed {args.seed}, {args.examples} drawn requests per RPC, {len(rpcs())} RPCs of the 1.6.4 client.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| requests sent | {refusals.sent + drawn.sent:,} |",
        f"| without a token or with a wrong one | {len(rpcs()) * 2:,} |",
        f"| malformed bodies (random bytes, truncated, another type) | {refusals.sent - len(rpcs()) * 2:,} |",
        f"| drawn requests with extreme values | {drawn.sent:,} |",
        f"| answers by status | {', '.join(f'{k} {v:,}' for k, v in sorted(statuses.items()))} |",
        f"| defects (INTERNAL, traceback, dropped connection, unnamed UNIMPLEMENTED) | {len(defects)} |",
        f"| latency p50 / p99 | {_pct(latencies, 50):.1f} ms / {_pct(latencies, 99):.1f} ms |",
        f"| server memory before / after | {before:.0f} MiB / {after:.0f} MiB |",
        f"| server still serving after | {'yes' if alive else 'no'} |",
        f"| wall time | {elapsed:.0f} s; fuzzer's own peak RSS "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB |",
        "",
        "DEADLINE counts requests the fuzzer stopped waiting for after 4 s (long polls with a drawn timeout);",
        "UNIMPLEMENTED ones name the RPC Berth does not serve. Defects found by earlier runs are pinned by",
        "tests in tests/reliability/test_rpc_fuzz.py.",
        END,
    ]
    _emit("\n".join(lines), args.no_write)
    return defects


def _emit(table: str, no_write: bool) -> None:
    if no_write:
        print(table)
    else:
        _write(table)
        print(f"wrote {DOC.relative_to(ROOT)}", file=sys.stderr)


def _write(table: str) -> None:
    header = (
        "# Reliability\n\nFigures anyone can reproduce with `make reliability` (a fresh `berth up` on this machine). "
        "CI runs the same checks, seeded and shorter, in tests/reliability/.\n\n"
    )
    text = DOC.read_text() if DOC.exists() else header
    begin, end = table.splitlines()[0], table.splitlines()[-1]  # the section's own markers
    if begin in text and end in text:
        text = text[: text.index(begin)] + table + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip("\n") + "\n\n" + table + "\n"
    DOC.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
