"""Map throughput on a local cluster (scripts/local-cluster.sh: PostgreSQL, Redis, SeaweedFS S3, a TLS
`berth server`, workers in network namespaces) with 1, 2 and 4 workers, through the stock modal CLI.
Writes its table into docs/benchmarks.md between the cluster-bench markers. Needs root.

    python bench/cluster.py [--inputs 5000] [--workers 1,2,4] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from procfs import process_cpu_seconds
from report import replace_section

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "local-cluster.sh"
DOC = ROOT / "docs" / "benchmarks.md"
BIN = Path(sys.executable).parent
BEGIN, END = "<!-- cluster-bench -->", "<!-- /cluster-bench -->"


def cluster(*args: object) -> str:
    return subprocess.run([SCRIPT, *map(str, args)], capture_output=True, text=True, check=True).stdout


def client_env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODAL_")}
    for assignment in shlex.split(cluster("env", root).removeprefix("export ")):
        key, _, value = assignment.partition("=")
        env[key] = value
    env["MODAL_CONFIG_PATH"] = str(root / "client.toml")
    return env


def measure(workers: int, inputs: int, tmp: Path) -> tuple[float, float | None]:
    """(inputs/s, server CPU ms per input) for one map on a fresh cluster of `workers` workers."""
    root = tmp / f"c{workers}"
    cluster("up", root, workers)
    try:
        server_pid = json.loads((root / "cluster.json").read_text())["pids"]["servers"]["1"]
        before = process_cpu_seconds(server_pid)
        run = subprocess.run(
            [BIN / "modal", "run", "cluster_app.py", "--n", str(inputs)],
            cwd=Path(__file__).parent,
            env=client_env(root),
            capture_output=True,
            text=True,
            timeout=900,
        )
        after = process_cpu_seconds(server_pid)
        line = next((x for x in run.stdout.splitlines() if x.startswith("RATE ")), None)
        if run.returncode != 0 or line is None:
            raise RuntimeError(f"the map failed: {run.stdout[-2000:]}{run.stderr[-2000:]}")
        rate = float(line.split()[1])
        cpu = (after - before) * 1000 / (inputs + 200) if before is not None and after is not None else None
        return rate, cpu
    finally:
        cluster("down", root)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--inputs", type=int, default=5000)
    p.add_argument("--workers", default="1,2,4")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()
    if os.geteuid() != 0:
        print("bench/cluster.py: network namespaces need root; skipped", file=sys.stderr)
        return 0
    rows = ["| workers | map rate (inputs/s) | server CPU per input |", "|---|---|---|"]
    with tempfile.TemporaryDirectory(prefix="berth-bench-cluster-") as tmp:
        for n in (int(x) for x in args.workers.split(",")):
            rate, cpu = measure(n, args.inputs, Path(tmp))
            print(f"[bench] {n} worker(s): {rate:.0f} inputs/s", file=sys.stderr)
            rows.append(f"| {n} | {rate:.0f} | {f'{cpu:.2f} ms' if cpu is not None else '?'} |")
    load = os.getloadavg()[0]
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    section = [
        BEGIN,
        f"## Map throughput on a local cluster (`bench/cluster.py`, {when})",
        "",
        f"A {args.inputs}-input `.map` of a trivial function after a 200-input warm-up, through the stock modal CLI, "
        "on `scripts/local-cluster.sh` (PostgreSQL, Redis and SeaweedFS for state, a TLS server, process-runtime "
        f"workers in their own network namespaces, all on this {os.cpu_count()}-core machine; load {load:.1f}). "
        "The workers share the machine's cores with the server and the engines, so more workers add no CPU here: "
        "the figures show what the scale-out path costs, not how it scales across hosts.",
        "",
        *rows,
        END,
    ]
    print("\n".join(section))
    if not args.no_write:
        replace_section(DOC, BEGIN, END, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
