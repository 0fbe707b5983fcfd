"""Function cold start on crun, with and without the standby pool of function containers
(berth.worker.sandbox_pool; BERTH_FUNCTION_POOL=0 turns it off): the first `.remote()` of a fresh ephemeral app
(`with app.run()`: a new app and function, so no warm container can serve it), client end to end, p50 and p99
over N trials on a fresh `berth up --runtime crun` per mode. The image is built (or fetched) and the pool
filled by one untimed call first; trials are PAUSE_S apart (untimed, in both modes) so the pool has refilled.
Says how many calls the pool served (from the server log). Writes its table into docs/benchmarks.md between
the coldpool-bench markers. Needs root.

    python bench/coldpool.py [--trials 20] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from berth_server import berth_server
from report import percentile_ms as _ms
from report import replace_section

BIN = Path(sys.executable).parent
HERE = Path(__file__).resolve().parent
DOC = HERE.parent / "docs" / "benchmarks.md"
BEGIN, END = "<!-- coldpool-bench -->", "<!-- /coldpool-bench -->"
PAUSE_S = 3.0

DRIVER = """
import json, sys, time
sys.path.insert(0, {here!r})
from berth_app import app, probe
with app.run():
    probe.remote(0)  # builds or fetches the image and, with the pool on, fills it; not measured
times = []
for _ in range({trials}):
    time.sleep({pause})
    with app.run():
        t0 = time.perf_counter()
        probe.remote(1)
        times.append(time.perf_counter() - t0)
print("RESULT=" + json.dumps(times))
"""


def measure(trials: int, root: Path, pooled: bool) -> tuple[list[float], int]:
    mode = "pool" if pooled else "fresh"
    log = root / f"crun-{mode}.log"
    with berth_server(BIN, log, "crun", {} if pooled else {"BERTH_FUNCTION_POOL": "0"}) as server:
        env = {**server.env, "MODAL_CONFIG_PATH": str(root / f"{mode}.toml")}
        code = DRIVER.format(here=str(HERE), trials=trials, pause=PAUSE_S)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=3600)
    lines = [x for x in out.stdout.splitlines() if x.startswith("RESULT=")]
    if not lines:
        raise RuntimeError(f"{mode} driver failed: {out.stderr[-2000:]}")
    served = log.read_text(errors="replace").count("starts in pooled container")
    return list(json.loads(lines[-1].removeprefix("RESULT="))), served


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()
    if os.geteuid() != 0 or shutil.which("crun") is None:
        print("bench/coldpool.py: needs root and crun; skipped", file=sys.stderr)
        return 0
    rows = [
        "| function containers | cold start p50 | p99 | min | max | calls the pool served |",
        "|---|---|---|---|---|---|",
    ]
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="berth-bench-coldpool-") as tmp:
        for pooled in (False, True):
            times, served = measure(args.trials, Path(tmp), pooled)
            label = "standby pool (default)" if pooled else "fresh (`BERTH_FUNCTION_POOL=0`)"
            print(f"[bench] {label}: {served} from the pool", file=sys.stderr)
            rows.append(
                f"| {label} | {_ms(times, 50):.0f} ms | {_ms(times, 99):.0f} ms | {min(times) * 1e3:.0f} ms "
                f"| {max(times) * 1e3:.0f} ms | {min(served, len(times))}/{len(times)} |"
            )
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    section = [
        BEGIN,
        f"## Function cold start with the standby pool (`bench/coldpool.py`, {when})",
        "",
        f"{args.trials} cold starts per row on crun, each the first `.remote()` of a fresh ephemeral app (a new "
        f"function, so no warm container), client end to end, on a fresh `berth up` per row (this "
        f"{os.cpu_count()}-core machine, load {load:.1f} when it started), {PAUSE_S:.0f} s apart. Fresh: every "
        "call starts a container (overlay, namespaces, cgroup, network, `crun run`) and its Python imports "
        "modal. Standby pool: the container was started ahead with Berth's loop waiting, modal imported; the "
        "worker hands it the task's files, arguments and environment. The Cold start issue's target on crun is "
        "150 ms p50 with a standby pool.",
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
