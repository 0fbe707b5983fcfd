"""Sandbox start and exec round trip, through the stock modal SDK, on each OCI runtime installed (crun, runsc):
"create → first exec output" (`Sandbox.create` until the first line of an `echo` exec arrives) and the round
trip of a small exec in a running sandbox, p50 and p99, over N sandboxes on a fresh `berth up`, cold (no warm
pool: BERTH_SANDBOX_POOL=0, every create starts a container) and from the warm pool (the default; creates
0.5 s apart, untimed, so the pool has refilled). The image is built (or fetched) once
before the trials; the first create of a warm run fills the pool and is not timed. Says which exec path the
sandboxes used (berth-execd or `<runtime> exec`, read from an exec's parent process) and how many creates
the pool served. Writes its table into docs/benchmarks.md between the sandbox-bench markers. Needs root.

    python bench/sandboxes.py [--sandboxes 20] [--execs 20] [--runtime runsc] [--no-write]

--runtime (repeatable) measures only those runtimes; the other runtimes' rows already in the document stay.
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
DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
BEGIN, END = "<!-- sandbox-bench -->", "<!-- /sandbox-bench -->"

DRIVER = """
import json, time, modal
app = modal.App.lookup("bench-sandboxes", create_if_missing=True)
image = modal.Image.debian_slim()
warm = modal.Sandbox.create("sleep", "60", app=app, image=image)  # builds or fetches the image; not measured
parent = warm.exec("sh", "-c", "tr '\\\\0' ' ' < /proc/$PPID/cmdline")
exec_path = "execd" if parent.stdout.read().startswith("/__berth/execd") else "runtime exec"
parent.wait()
warm.terminate()
starts, trips = [], []
for _ in range({sandboxes}):
    if {pause}:
        time.sleep({pause})
    t0 = time.perf_counter()
    sb = modal.Sandbox.create("sleep", "300", app=app, image=image)
    p = sb.exec("echo", "ready", bufsize=1)
    first = next(iter(p.stdout))
    starts.append(time.perf_counter() - t0)
    assert first.strip() == "ready", first
    p.wait()
    for _ in range({execs}):
        t1 = time.perf_counter()
        q = sb.exec("true")
        q.wait()
        trips.append(time.perf_counter() - t1)
    sb.terminate()
print("RESULT=" + json.dumps({{"starts": starts, "trips": trips, "exec_path": exec_path}}))
"""
POOL_PAUSE_S = 0.5


def measure(runtime: str, sandboxes: int, execs: int, root: Path, pooled: bool) -> dict[str, object]:
    mode = "pool" if pooled else "cold"
    log = root / f"{runtime}-{mode}.log"
    pool_env = {} if pooled else {"BERTH_SANDBOX_POOL": "0"}
    with berth_server(BIN, log, runtime, pool_env) as server:
        env = {**server.env, "MODAL_CONFIG_PATH": str(root / f"{runtime}-{mode}.toml")}
        code = DRIVER.format(sandboxes=sandboxes, execs=execs, pause=POOL_PAUSE_S if pooled else 0)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=3600)
    lines = [x for x in out.stdout.splitlines() if x.startswith("RESULT=")]
    if not lines:
        raise RuntimeError(f"{runtime} driver failed: {out.stderr[-2000:]}")
    got = dict(json.loads(lines[-1].removeprefix("RESULT=")))
    got["from_pool"] = log.read_text(errors="replace").count("starts in pooled container")
    return got


def _row(runtime: str, mode: str, got: dict[str, object]) -> str:
    starts, trips = got["starts"], got["trips"]
    assert isinstance(starts, list) and isinstance(trips, list)
    path = "berth-execd" if got["exec_path"] == "execd" else f"`{runtime} exec`"
    return (
        f"| {runtime} | {mode} | {_ms(starts, 50):.0f} ms | {_ms(starts, 99):.0f} ms "
        f"| {_ms(trips, 50):.1f} ms | {_ms(trips, 99):.1f} ms | {path} | {got['from_pool']}/{len(starts)} |"
    )


def _rows_in_doc() -> list[str]:
    """The table rows of the sandbox section now in docs/benchmarks.md (those of runtimes not re-measured stay)."""
    text = DOC.read_text() if DOC.exists() else ""
    if BEGIN not in text:
        return []
    section = text.split(BEGIN, 1)[1].split(END, 1)[0]
    return [x for x in section.splitlines() if x.startswith("| crun") or x.startswith("| runsc")]


def _doc_date(kept_names: str) -> str:
    """When the rows kept from docs/benchmarks.md were measured: the earlier run's note where it was about
    the same runtimes, else its heading."""
    text = DOC.read_text().split(BEGIN, 1)[1].split(END, 1)[0]
    if f"The {kept_names} rows are from an earlier run (" in text:
        return text.split("rows are from an earlier run (", 1)[1].split(")", 1)[0]
    return text.split("`bench/sandboxes.py`, ", 1)[1].split(")", 1)[0]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sandboxes", type=int, default=20)
    p.add_argument("--execs", type=int, default=20, help="exec round trips timed in each sandbox")
    p.add_argument("--runtime", action="append", choices=["crun", "runsc"], help="only these (default: all)")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()
    wanted = args.runtime or ["crun", "runsc"]
    runtimes = [r for r in ("crun", "runsc") if r in wanted and os.geteuid() == 0 and shutil.which(r)]
    if not runtimes:
        print("bench/sandboxes.py: sandboxes need root and an OCI runtime; skipped", file=sys.stderr)
        return 0
    rows = [
        "| runtime | start | create → first exec output p50 | p99 | exec round trip p50 | p99 | exec path "
        "| creates the pool served |",
        "|---|---|---|---|---|---|---|---|",
    ]
    load = os.getloadavg()[0]
    kept = [row for row in _rows_in_doc() if row.split("|")[1].strip() not in runtimes]
    measured = []
    with tempfile.TemporaryDirectory(prefix="berth-bench-sb-") as tmp:
        for runtime in runtimes:
            for pooled in (False, True):
                got = measure(runtime, args.sandboxes, args.execs, Path(tmp), pooled)
                print(
                    f"[bench] {runtime} {'pool' if pooled else 'cold'}: {got['from_pool']} from the pool",
                    file=sys.stderr,
                )
                measured.append(_row(runtime, "warm pool" if pooled else "cold", got))
    kept_names = " and ".join(sorted({row.split("|")[1].strip() for row in kept}))
    order = ["crun", "runsc"]
    rows += sorted(kept + measured, key=lambda row: order.index(row.split("|")[1].strip()))
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    section = [
        BEGIN,
        f"## Sandboxes (`bench/sandboxes.py`, {when})",
        "",
        f"{args.sandboxes} sandboxes per row, created one after another through the stock SDK on a fresh "
        f"`berth up` (this {os.cpu_count()}-core machine, load {load:.1f} when it started); in each, {args.execs} "
        "`exec('true')` round trips. Cold: `BERTH_SANDBOX_POOL=0`, every create starts a container (its disk, "
        "overlay, namespaces, cgroup and network). Warm pool: the default pool, creates 0.5 s apart (untimed) so "
        "it has refilled. A runsc sandbox's exec is a `runsc exec` (execd needs an fd passed in), most of its "
        "create → first exec from the pool. The targets of the Sandboxes issue on this machine are "
        "100 ms p50 cold, 25 ms from a warm pool and 5 ms per exec round trip; Modal and E2B publish about "
        "200 ms to first exec, Daytona under 90 ms.",
        *(
            ["", f"The {kept_names} rows are from an earlier run ({_doc_date(kept_names)}); the others from this one."]
            if kept
            else []
        ),
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
