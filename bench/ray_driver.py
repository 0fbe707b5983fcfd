"""Ray side of the benchmark: the same workload as berth_driver.py on a local Ray (`ray.init()`).

- ready: reports `ray.init()` time and the latency of the first task after it (workers prestarted by
  ray.init, so this is not a fresh-process start);
- cold: a fresh remote function with its own `runtime_env` (a unique env var), which Ray cannot place
  on any existing worker, so it starts a new worker process: the analogue of a new container;
- warm: sequential `ray.get(probe.remote(i))` after `warmup` untimed calls;
- map: `ray.get([probe.remote(i) for i in range(n)])`.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

from protocol import Message, cold_result, emit, map_result, serve, timed_calls

NUM_CPUS = 2


def probe_body(x: int) -> tuple[int, float]:
    """Trivial work: say which process handled the input, and when."""
    return os.getpid(), time.time()


class RayDriver:
    def __init__(self, ray: Any) -> None:
        self._ray = ray
        self._probe = ray.remote(probe_body)

    def handle(self, command: Message) -> Message:
        op = command["op"]
        if op == "cold":
            return self.cold()
        if op == "warm":
            timed_calls(self.call, command.get("warmup", 0))
            return {"op": op, "latencies_s": timed_calls(self.call, command["n"])}
        if op == "map":
            return self.map(command["n"])
        raise ValueError(f"unknown op {op!r}")

    def call(self, x: int) -> tuple[int, float]:
        result: tuple[int, float] = self._ray.get(self._probe.remote(x))
        return result

    def cold(self) -> Message:
        fresh = self._ray.remote(runtime_env={"env_vars": {"BENCH_COLD_TOKEN": uuid.uuid4().hex}})(probe_body)
        called_at = time.time()
        start = time.perf_counter()
        pid, handled_at = self._ray.get(fresh.remote(0))
        return cold_result(time.perf_counter() - start, called_at, pid, handled_at)

    def map(self, n: int) -> Message:
        started_at, start, cpu = time.time(), time.perf_counter(), time.process_time()
        results = self._ray.get([self._probe.remote(i) for i in range(n)])
        total = time.perf_counter() - start
        return map_result(n, started_at, total, time.process_time() - cpu, results)


def start_ray() -> tuple[Any, Message]:
    """Import and start Ray; the ready message carries the start-up timings or the reason it failed."""
    try:
        import ray
    except ImportError as exc:
        return None, {"op": "ready", "error": f"ray is not installed ({exc})"}
    try:
        start = time.perf_counter()
        ray.init(num_cpus=NUM_CPUS, include_dashboard=False, log_to_driver=False)
        init_s = time.perf_counter() - start
        first = ray.remote(probe_body)
        start = time.perf_counter()
        ray.get(first.remote(0))
        first_s = time.perf_counter() - start
    except Exception as exc:
        return None, {"op": "ready", "error": f"ray.init failed: {type(exc).__name__}: {exc}"}
    return ray, {"op": "ready", "version": ray.__version__, "init_s": init_s, "first_task_s": first_s}


def main() -> None:
    ray, ready = start_ray()
    emit(ready)
    if ray is None:
        return
    try:
        serve(RayDriver(ray).handle)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
