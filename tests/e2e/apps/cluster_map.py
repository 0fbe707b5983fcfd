"""A map spread over a cluster's workers: checks every output arrived once and in order, and prints how
many containers served it."""

import os
import sys
import time

import modal

app = modal.App("e2e-cluster-map")


@app.function()
def slow_square(x: int) -> tuple[int, str]:
    time.sleep(0.02)
    return x * x, os.environ.get("MODAL_TASK_ID", "")


@app.local_entrypoint()
def main(n: int = 1500) -> None:
    results = list(slow_square.map(range(n)))
    if [r[0] for r in results] != [x * x for x in range(n)]:
        sys.exit("outputs missing, doubled or out of order")
    print(f"MAP OK {len(results)} outputs from {len({r[1] for r in results})} containers")


@app.function()
def length(data: bytes) -> int:
    return len(data)


@app.local_entrypoint()
def big_len(size: int) -> None:
    print(f"BIG LEN {length.remote(b'x' * size)}")
