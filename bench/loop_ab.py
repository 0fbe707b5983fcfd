"""Berth's container loop against modal's own, A/B in one run (`make bench`): two throwaway `berth up` servers
(process runtime), one with BERTH_CONTAINER_LOOP=berth (the default) and one with =stock, each driven by the
stock modal SDK (bench/berth_driver.py). Warm round trips and a map, interleaved between the two, with the CPU
per input of the server, the containers and the client; then how fast spawn_map enqueues. Writes its table
into docs/benchmarks.md between the loop-bench markers.

    python bench/loop_ab.py [--inputs 10000] [--warm 200] [--spawn 20000] [--no-write]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from berth_server import berth_server
from peers import Peer
from procfs import process_cpu_seconds
from report import percentile_ms as _ms
from report import replace_section

BIN = Path(sys.executable).parent
DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
BEGIN, END = "<!-- loop-bench -->", "<!-- /loop-bench -->"
MODES = ("berth", "stock")


def log(message: str) -> None:
    print(f"[loop-ab {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def measure(inputs: int, warm: int, spawn: int, workdir: Path) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {m: {"warm_s": []} for m in MODES}
    with ExitStack() as stack:
        peers: dict[str, tuple[Peer, int]] = {}
        for mode in MODES:
            server = stack.enter_context(
                berth_server(BIN, workdir / f"server-{mode}.log", env={"BERTH_CONTAINER_LOOP": mode})
            )
            peer = Peer(f"Berth ({mode} loop)", "berth_driver.py", server.env, workdir / f"driver-{mode}.stderr")
            stack.callback(peer.close)
            ready = peer.receive(180)
            if "error" in ready:
                raise RuntimeError(f"{peer.name}: {ready['error']}")
            peers[mode] = (peer, server.pid)
        for i in range(4):  # warm blocks, alternating who goes first
            for mode in MODES if i % 2 == 0 else reversed(MODES):
                peer, _ = peers[mode]
                got = peer.request({"op": "warm", "n": warm // 4, "warmup": 10 if i == 0 else 0}, 300)
                results[mode]["warm_s"] += got.get("latencies_s", [])
        for mode in MODES:
            peer, pid = peers[mode]
            log(f"map of {inputs:,} on the {mode} loop")
            before = process_cpu_seconds(pid) or 0.0
            got = peer.request({"op": "map", "n": inputs}, 900)
            results[mode]["map"] = got
            results[mode]["server_cpu_s"] = (process_cpu_seconds(pid) or 0.0) - before
        if spawn:
            peer, _ = peers["berth"]
            log(f"spawn_map of {spawn:,}")
            results["berth"]["spawn"] = peer.request({"op": "spawn_map", "n": spawn}, 1800)
    return results


def section(results: dict[str, dict[str, Any]], inputs: int, spawn: int) -> list[str]:
    rows = []
    for mode in MODES:
        r = results[mode]
        m = r["map"]
        if "error" in m:
            rows.append(f"| {mode} | error: {m['error']} | | | | | |")
            continue
        n = m["n"]
        per_input = [r["server_cpu_s"], m["workers_cpu_s"], m["client_cpu_s"]]
        cpu = " | ".join(f"{x / n * 1e3:.2f}" for x in per_input)
        rows.append(
            f"| {mode} | {_ms(r['warm_s'], 50):.2f} | {_ms(r['warm_s'], 99):.2f} | {n / m['total_s']:,.0f} | {cpu} |"
        )
    a, b = results["berth"]["map"], results["stock"]["map"]
    lines = [
        f"## Container loop A/B (`bench/loop_ab.py`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
        "",
        "Two `berth up` servers (process runtime) in one run, driven by the stock modal SDK: Berth's container loop",
        "(prefetched inputs, merged outputs; the default) against modal's own (`BERTH_CONTAINER_LOOP=stock`). Warm",
        f"round trips interleaved in 4 blocks, then a map of {inputs:,} trivial inputs on each. CPU per input is",
        "the server process's during the map, the containers' since they started (their start-up included), and",
        "the client's during the map.",
        "",
        "| loop | warm p50 [ms] | warm p99 [ms] | map [inputs/s] | server CPU/input [ms] | containers CPU/input [ms] "
        "| client CPU/input [ms] |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]
    if "error" not in a and "error" not in b:
        lines.append(f"Map rate, berth loop / stock loop: {(b['total_s'] / a['total_s']):.2f}×.")
    spawned = results["berth"].get("spawn")
    if spawn and spawned and "error" not in spawned:
        for name in ("spawn_map", "experimental_spawn_map"):
            s = spawned[name]
            lines.append(
                f"- `{name}` of {spawn:,} inputs: accepted in {s['total_s']:.1f} s ({spawn / s['total_s']:,.0f} "
                f"inputs/s); client CPU {s['client_cpu_s'] / spawn * 1e3:.2f} ms per input."
            )
        lines.append(
            "  The stock client's `spawn_map` makes one FunctionMap call per input, so its own CPU per input bounds "
            "the rate; `experimental_spawn_map` sends inputs in batches to one call."
        )
    lines.append(
        f"- warm samples: {len(results['berth']['warm_s'])} per loop; mean berth "
        f"{statistics.mean(results['berth']['warm_s']) * 1e3:.2f} ms, stock "
        f"{statistics.mean(results['stock']['warm_s']) * 1e3:.2f} ms"
        if results["berth"]["warm_s"] and results["stock"]["warm_s"]
        else "- no warm samples"
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--inputs", type=int, default=10_000)
    p.add_argument("--warm", type=int, default=200)
    p.add_argument("--spawn", type=int, default=20_000)
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="berth-loop-ab-"))
    log(f"logs in {workdir}")
    results = measure(args.inputs, args.warm, args.spawn, workdir)
    lines = section(results, args.inputs, args.spawn)
    print("\n".join(lines))
    if not args.no_write:
        replace_section(DOC, BEGIN, END, [BEGIN, *lines, END])
        log(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
