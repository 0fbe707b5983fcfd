"""The app bench/cluster.py maps over a local cluster: trivial work, timed inside the client."""

from __future__ import annotations

import time

import modal

app = modal.App("berth-bench-cluster")


@app.function()
def square(x: int) -> int:
    return x * x


@app.local_entrypoint()
def main(n: int = 5000, warmup: int = 200) -> None:
    list(square.map(range(warmup)))  # containers up on every worker
    started = time.perf_counter()
    results = list(square.map(range(n)))
    elapsed = time.perf_counter() - started
    assert results == [x * x for x in range(n)]
    print(f"RATE {n / elapsed:.1f} {elapsed:.3f}")
