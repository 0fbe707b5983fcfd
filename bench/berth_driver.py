"""Berth side of the benchmark: drives a Berth server through the stock modal SDK.

Run by bench/run.py with MODAL_SERVER_URL / MODAL_TOKEN_ID / MODAL_TOKEN_SECRET from `berth env`; it
speaks the line protocol of bench/protocol.py.
- cold: a fresh ephemeral app (`with app.run()`, so a new function and no warm container), timing its
  first `.remote()`;
- warm: sequential `.remote()` calls on one long-lived app run, after `warmup` untimed calls;
- map: `probe.map(range(n))` on that same app run;
- spawn_map: how long `probe.spawn_map(range(n))` and `probe.experimental_spawn_map(range(n))` take to return.
"""

from __future__ import annotations

import contextlib
import time

from berth_app import app, probe
from protocol import Message, cold_result, emit, map_result, serve, timed_calls


class BerthDriver:
    def __init__(self) -> None:
        self._session: contextlib.ExitStack | None = None

    def handle(self, command: Message) -> Message:
        op = command["op"]
        if op == "cold":
            self.close()
            return self.cold()
        if self._session is None:
            self._session = contextlib.ExitStack()
            self._session.enter_context(app.run())
        if op == "warm":
            timed_calls(probe.remote, command.get("warmup", 0))
            return {"op": op, "latencies_s": timed_calls(probe.remote, command["n"])}
        if op == "map":
            return self.map(command["n"])
        if op == "spawn_map":
            return self.spawn_map(command["n"])
        raise ValueError(f"unknown op {op!r}")

    def cold(self) -> Message:
        """Time the first `.remote()` of a fresh app; `app.run()` itself (app and function creation,
        mount upload) is reported apart as app_setup_s."""
        setup_start = time.perf_counter()
        with app.run():
            app_setup_s = time.perf_counter() - setup_start
            called_at = time.time()
            start = time.perf_counter()
            pid, handled_at = probe.remote(0)
            latency = time.perf_counter() - start
            return {**cold_result(latency, called_at, pid, handled_at), "app_setup_s": app_setup_s}

    def map(self, n: int) -> Message:
        started_at, start, cpu = time.time(), time.perf_counter(), time.process_time()
        results = list(probe.map(range(n)))
        total = time.perf_counter() - start
        return map_result(n, started_at, total, time.process_time() - cpu, results)

    def spawn_map(self, n: int) -> Message:
        """How fast the client's spawn_map and experimental_spawn_map get n inputs accepted (not run)."""
        out: Message = {"op": "spawn_map", "n": n}
        for name, spawn in (("spawn_map", probe.spawn_map), ("experimental_spawn_map", probe.experimental_spawn_map)):
            start, cpu = time.perf_counter(), time.process_time()
            spawn(range(n))
            out[name] = {"total_s": time.perf_counter() - start, "client_cpu_s": time.process_time() - cpu}
        return out

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None


def main() -> None:
    driver = BerthDriver()
    emit({"op": "ready"})
    try:
        serve(driver.handle)
    finally:
        driver.close()


if __name__ == "__main__":
    main()
