"""`make reliability`: the full RPC fuzz run against a fresh `berth up`, and its figures in docs/reliability.md.

    python scripts/reliability.py [--examples 40] [--seed N] [--no-write]

CI runs the same checks in a seeded, shorter size (tests/reliability/, BERTH_FUZZ_EXAMPLES=2). The run
fails (exit 1) on any defect: an INTERNAL or UNKNOWN status, a traceback in a message, a dropped connection,
an unserved RPC answered without its name, or the server gone or grown by more than 300 MiB."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from grpclib.client import Channel  # noqa: E402
from modal_proto import api_pb2  # noqa: E402
from tests.e2e.conftest import start_server, stop_server  # noqa: E402
from tests.reliability import test_rpc_fuzz as fuzz_tests  # noqa: E402
from tests.reliability.fuzz import RawCodec, Tally, raw_requests, rpcs, send  # noqa: E402

DOC = ROOT / "docs" / "reliability.md"
BEGIN, END = "<!-- rpc-fuzz -->", "<!-- /rpc-fuzz -->"


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=40, help="drawn requests per RPC (default 40)")
    parser.add_argument("--seed", type=int, default=int(os.environ.get("BERTH_FUZZ_SEED", "20261201")))
    parser.add_argument("--no-write", action="store_true", help="print the table instead of writing the doc")
    args = parser.parse_args()
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
    table = "\n".join(lines)
    for d in defects[:50]:
        print("DEFECT", d[:300], file=sys.stderr)
    if args.no_write:
        print(table)
    else:
        _write(table)
        print(f"wrote {DOC.relative_to(ROOT)}", file=sys.stderr)
    return 1 if defects else 0


def _write(table: str) -> None:
    header = (
        "# Reliability\n\nFigures anyone can reproduce with `make reliability` (a fresh `berth up` on this machine). "
        "CI runs the same checks, seeded and shorter, in tests/reliability/.\n\n"
    )
    text = DOC.read_text() if DOC.exists() else header
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + table + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip("\n") + "\n\n" + table + "\n"
    DOC.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
