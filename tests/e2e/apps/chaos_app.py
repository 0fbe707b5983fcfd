"""Functions for the chaos tests (tests/e2e/test_chaos.py): one input of a map parks its container, which the
test then kills with SIGKILL; the same work with and without a retry policy, and a long map to cut a client off."""

import json
import os
import sys
import time
from pathlib import Path

import modal

app = modal.App("e2e-chaos")


def _work(i: int, marker_dir: str) -> int:
    pidfile = Path(marker_dir) / "pid"
    if i == 3 and not pidfile.exists():
        # Berth's loop starts this input while the output of the one before it may still be on its way to the
        # server (merged outputs); a kill in that moment fails that input too, as a container that dies before
        # reporting any output does. The test means to kill this input alone: let that output land first.
        time.sleep(2)
        pidfile.write_text(str(os.getpid()))  # the test kills this container now
        time.sleep(600)
    return i * i


@app.function(retries=0, max_containers=4)
def fragile(i: int, marker_dir: str) -> int:
    return _work(i, marker_dir)


@app.function(retries=modal.Retries(max_retries=2, initial_delay=1.0, backoff_coefficient=1.0), max_containers=4)
def sturdy(i: int, marker_dir: str) -> int:
    return _work(i, marker_dir)


@app.function(max_containers=2)
def slow_square(x: int) -> int:
    time.sleep(0.05)
    return x * x


@app.local_entrypoint()
def main(which: str, marker_dir: str = "", n: int = 8) -> None:
    if which == "slow":
        print("MAP STARTED", flush=True)
        out = list(slow_square.map(range(n)))
        print("MAP OK", len(out))
        return
    fn = fragile if which == "fragile" else sturdy
    results = []
    for r in fn.map(range(n), kwargs={"marker_dir": marker_dir}, return_exceptions=True):
        results.append(r if isinstance(r, int) else f"{type(r).__name__}: {r}")
    print("RESULT " + json.dumps(results), file=sys.stdout)
