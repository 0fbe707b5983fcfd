"""`make bench`: Berth (process runtime, stock modal SDK) side by side with a local Ray on this machine.

Measures cold start (first call of a fresh function), warm round trip (p50/p99) and `.map` throughput
for both in one run, interleaved, prints a markdown table and writes it, with the machine and the
methodology, to docs/benchmarks.md. See bench/protocol.py for how the drivers are driven.

    python bench/run.py                      # the full benchmark (a few minutes)
    python bench/run.py --quick --no-write   # a small smoke run
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from berth_server import berth_server
from peers import Peer
from procfs import process_cpu_seconds
from protocol import Message
from report import PeerResults, Plan, machine_lines, render_document, results_table

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
BIN = Path(sys.executable).parent
READY_TIMEOUT_S = 180.0
OP_TIMEOUT_S = 120.0
MAP_TIMEOUT_S = 400.0


FULL = Plan(cold_trials=5, warm_calls=200, warm_rounds=4, warmup=10, map_inputs=10_000)
QUICK = Plan(cold_trials=2, warm_calls=40, warm_rounds=2, warmup=5, map_inputs=500)


def parse_args(argv: list[str] | None) -> tuple[Plan, bool]:
    """The plan (FULL, or QUICK with --quick, with any explicit option on top) and whether to write DOC."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help=f"small smoke run: {QUICK}")
    p.add_argument("--no-write", action="store_true", help=f"do not write {DOC.relative_to(ROOT)}")
    for name in Plan.__dataclass_fields__:
        p.add_argument(f"--{name.replace('_', '-')}", type=int, help=f"default {getattr(FULL, name)}")
    args = vars(p.parse_args(argv))
    base = QUICK if args["quick"] else FULL
    overrides = {k: v for k, v in args.items() if k in Plan.__dataclass_fields__ and v is not None}
    return dataclasses.replace(base, **overrides), not args["no_write"]


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def interleaved(
    peers: list[tuple[Peer, PeerResults]], rounds: int, command: Callable[[int], Message], timeout_s: float
) -> None:
    """Send command(i) to every peer for i in range(rounds), alternating which peer goes first."""
    for i in range(rounds):
        order = peers if i % 2 == 0 else list(reversed(peers))
        for peer, results in order:
            results.record(peer.request(command(i), timeout_s))


def run_workload(plan: Plan, peers: list[tuple[Peer, PeerResults]], server_pid: int) -> list[str]:
    """Cold, warm, then map on every peer; returns a note on the Berth server's CPU use during its map."""
    for peer, results in peers:
        results.record(peer.receive(READY_TIMEOUT_S))
        log(f"{peer.name} driver ready" + (f": {peer.error}" if peer.error else ""))
    log(f"cold start: {plan.cold_trials} trials each")
    interleaved(peers, plan.cold_trials, lambda i: {"op": "cold"}, OP_TIMEOUT_S)
    block = max(1, plan.warm_calls // plan.warm_rounds)
    log(f"warm round trip: {plan.warm_rounds} blocks of {block} calls each")
    interleaved(
        peers,
        plan.warm_rounds,
        lambda i: {"op": "warm", "n": block, "warmup": plan.warmup if i == 0 else 0},
        OP_TIMEOUT_S,
    )
    notes = []
    for peer, results in peers:
        log(f"map: {plan.map_inputs:,} inputs on {peer.name}")
        cpu_before = process_cpu_seconds(server_pid)
        results.record(peer.request({"op": "map", "n": plan.map_inputs}, MAP_TIMEOUT_S))
        if peer.name == "Berth":
            notes += cpu_note(cpu_before, process_cpu_seconds(server_pid), plan.map_inputs)
    return notes


def cpu_note(before: float | None, after: float | None, inputs: int) -> list[str]:
    if before is None or after is None:
        return []
    used = after - before
    per_input_ms = used / inputs * 1e3
    return [f"- Berth server process CPU during its map: {used:.1f} s ({per_input_ms:.2f} ms per input)"]


def server_notes(log_path: Path) -> list[str]:
    """Warnings and errors the Berth server logged during the run (they would hint at Berth problems)."""
    lines = log_path.read_text(errors="replace").splitlines()
    bad = [line for line in lines if any(w in line for w in ("WARNING", "ERROR", "Traceback", "CRITICAL"))]
    note = f"- Berth server log: {len(lines)} lines, {len(bad)} warnings/errors"
    return [note] + [f"  - `{line.strip()[:200]}`" for line in bad[:10]]


def benchmark(plan: Plan, workdir: Path) -> tuple[PeerResults, PeerResults, list[str]]:
    berth, ray = PeerResults("Berth"), PeerResults("Ray")
    ray_env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    log("starting Ray driver and Berth server")
    ray_peer = Peer("Ray", "ray_driver.py", ray_env, workdir / "ray_driver.stderr")
    try:
        with berth_server(BIN, workdir / "berth_server.log") as server:
            berth_peer = Peer("Berth", "berth_driver.py", server.env, workdir / "berth_driver.stderr")
            try:
                notes = run_workload(plan, [(berth_peer, berth), (ray_peer, ray)], server.pid)
            finally:
                berth_peer.close()
    finally:
        ray_peer.close()
    return berth, ray, notes + server_notes(workdir / "berth_server.log")


def other_sections(doc: Path) -> str:
    """What the page holds after this script's own sections (from the first `## ` heading after its
    Methodology): the other bench scripts' sections and their notes, kept as they are."""
    text = doc.read_text() if doc.exists() else ""
    own_end = text.find("## Methodology")
    later = text.find("\n## ", own_end + 1) if own_end >= 0 else -1
    return "\n" + text[later + 1 :] if later >= 0 else ""


def main(argv: list[str] | None = None) -> int:
    plan, write = parse_args(argv)
    machine = machine_lines()
    workdir = Path(tempfile.mkdtemp(prefix="berth-bench-logs-"))
    log(f"driver and server logs: {workdir}")
    berth, ray, notes = benchmark(plan, workdir)
    print(results_table(berth, ray, plan.cold_trials, plan.map_inputs))
    for line in notes + [f"- {p.name} error: {e}" for p in (berth, ray) for e in p.errors]:
        print(line)
    if write:
        DOC.write_text(render_document(plan, machine, berth, ray, notes) + other_sections(DOC))
        log(f"wrote {DOC.relative_to(ROOT)}")
    return 1 if berth.errors or not berth.cold else 0


if __name__ == "__main__":
    sys.exit(main())
