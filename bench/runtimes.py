"""Cold start on each container runtime: the process runtime (no isolation) next to crun (OCI: own
overlay root, namespaces, cgroup, network, seccomp) and runsc (gVisor) where installed. A cold start is
the first `.remote()` of a fresh app run, so each trial starts a new container; the image is built once
before the trials.

    python bench/runtimes.py [--trials 7]      # prints a markdown table (crun and runsc need root)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from berth_server import free_port_pair, parse_exports, wait_ready

BIN = Path(sys.executable).parent
HERE = Path(__file__).resolve().parent

DRIVER = """
import json, sys, time
sys.path.insert(0, {here!r})
from berth_app import app, probe
with app.run():
    probe.remote(0)  # build or fetch the image; not measured
times = []
for _ in range({trials}):
    with app.run():
        t0 = time.perf_counter()
        probe.remote(1)
        times.append(time.perf_counter() - t0)
print("RESULT=" + json.dumps(times))
"""


def measure(runtime: str, trials: int, root: Path) -> list[float]:
    data_dir = root / runtime
    port = free_port_pair()
    log = open(root / f"{runtime}.log", "wb")  # noqa: SIM115 - lives as long as the server
    argv = [BIN / "berth", "up", "--data-dir", data_dir, "--port", str(port), "--runtime", runtime]
    proc = subprocess.Popen(argv, stdout=log, stderr=log)
    try:
        wait_ready(BIN / "berth", data_dir, proc)
        exports = subprocess.run([BIN / "berth", "env", "--data-dir", data_dir], capture_output=True, text=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODAL_")}
        env.update(parse_exports(exports.stdout))
        env["MODAL_CONFIG_PATH"] = str(root / f"{runtime}.toml")
        code = DRIVER.format(here=str(HERE), trials=trials)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=1800)
        lines = [x for x in out.stdout.splitlines() if x.startswith("RESULT=")]
        if not lines:
            raise RuntimeError(f"{runtime} driver failed: {out.stderr[-2000:]}")
        return list(json.loads(lines[-1].removeprefix("RESULT=")))
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        log.close()


ISOLATION = {
    "process": "none (developer option)",
    "crun": "overlay root, namespaces, cgroup, netns, seccomp",
    "runsc": "gVisor user-space kernel (ptrace) + the above",
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=7)
    args = p.parse_args()
    runtimes = ["process"]
    for oci in ("crun", "runsc"):
        if os.geteuid() == 0 and shutil.which(oci):
            runtimes.append(oci)
        else:
            print(f"{oci} skipped: it needs root and scripts/setup-host.sh", file=sys.stderr)
    rows = ["| runtime | isolation | cold start p50 | min | max |", "|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory(prefix="berth-bench-rt-") as tmp:
        for runtime in runtimes:
            started = time.monotonic()
            times = measure(runtime, args.trials, Path(tmp))
            print(f"[bench] {runtime}: {len(times)} trials in {time.monotonic() - started:.0f}s", file=sys.stderr)
            isolation = ISOLATION[runtime]
            ms = [t * 1000 for t in times]
            rows.append(
                f"| {runtime} | {isolation} | {statistics.median(ms):.0f} ms | {min(ms):.0f} ms | {max(ms):.0f} ms |"
            )
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
