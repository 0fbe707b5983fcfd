"""The line protocol between bench/run.py and its two drivers (berth_driver.py, ray_driver.py).

The orchestrator writes one JSON command per line to a driver's stdin; the driver answers each with one
JSON line on stdout, prefixed with MARKER so that anything else the SDKs print there is ignored.
Commands: {"op": "cold"}, {"op": "warm", "n": N, "warmup": W}, {"op": "map", "n": N}, {"op": "quit"}.
The driver speaks first with {"op": "ready", ...} (or {"op": "ready", "error": ...} if it cannot run).
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from procfs import process_cpu_seconds, process_start_epoch

MARKER = "BENCH-RESULT "

Message = dict[str, Any]
Handler = Callable[[Message], Message]


def emit(message: Message) -> None:
    sys.stdout.write(MARKER + json.dumps(message) + "\n")
    sys.stdout.flush()


def parse(line: str) -> Message | None:
    """The message on a driver's output line, or None for a line some library printed."""
    if not line.startswith(MARKER):
        return None
    message: Message = json.loads(line[len(MARKER) :])
    return message


def serve(handler: Handler) -> None:
    """Answer commands from stdin until "quit" or EOF; an exception becomes {"error": ...}."""
    for line in sys.stdin:
        command: Message = json.loads(line)
        if command["op"] == "quit":
            emit({"op": "quit"})
            return
        try:
            emit(handler(command))
        except Exception as exc:  # the orchestrator shows it in the table instead of crashing
            traceback.print_exc()
            emit({"op": command["op"], "error": f"{type(exc).__name__}: {exc}"})


def cold_result(latency_s: float, called_at: float, pid: int, handled_at: float) -> Message:
    """A cold-start sample: client latency plus, when the process is visible here, its breakdown."""
    started = process_start_epoch(pid)
    result: Message = {"op": "cold", "latency_s": latency_s, "pid": pid}
    if started is not None:
        result["call_to_process_start_s"] = started - called_at
        result["process_start_to_handled_s"] = handled_at - started
    return result


def timed_calls(call: Callable[[int], object], n: int) -> list[float]:
    """Latency in seconds of each of n sequential calls."""
    latencies = []
    for i in range(n):
        start = time.perf_counter()
        call(i)
        latencies.append(time.perf_counter() - start)
    return latencies


def map_result(
    n: int, started_at: float, total_s: float, client_cpu_s: float, results: list[tuple[int, float]]
) -> Message:
    """A map sample: total time, how many worker processes took part, when the first input ran, the
    steady rate (inputs handled per second between the 10% and the 90% mark, i.e. after scale-up), and
    CPU seconds used by the client during the map and by the workers since they started."""
    if len(results) != n:
        raise RuntimeError(f"map returned {len(results)} results for {n} inputs")
    pids = {pid for pid, _ in results}
    handled = sorted(at for _, at in results)
    i, j = n // 10, (9 * n) // 10 - 1
    span = handled[j] - handled[i] if j > i else 0.0
    return {
        "op": "map",
        "n": n,
        "total_s": total_s,
        "workers": len(pids),
        "client_cpu_s": client_cpu_s,
        "workers_cpu_s": sum(process_cpu_seconds(pid) or 0.0 for pid in pids),
        "first_handled_s": handled[0] - started_at,
        "steady_rate": (j - i) / span if span > 0 else None,
    }
