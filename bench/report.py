"""Collect the drivers' answers, reduce them to the headline metrics, and render the table and the
docs/benchmarks.md page."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from protocol import Message


@dataclass
class PeerResults:
    name: str
    ready: Message = field(default_factory=dict)
    cold: list[Message] = field(default_factory=list)
    warm_s: list[float] = field(default_factory=list)
    maps: list[Message] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def record(self, message: Message) -> None:
        if "error" in message:
            if message["error"] not in self.errors:
                self.errors.append(str(message["error"]))
        elif message["op"] == "ready":
            self.ready = message
        elif message["op"] == "cold":
            self.cold.append(message)
        elif message["op"] == "warm":
            self.warm_s.extend(message["latencies_s"])
        elif message["op"] == "map":
            self.maps.append(message)


def median_of(samples: list[Message], key: str) -> float | None:
    values = [s[key] for s in samples if key in s]
    return statistics.median(values) if values else None


def replace_section(doc: Path, begin: str, end: str, section: list[str]) -> None:
    """Writes `section` (which starts with `begin` and ends with `end`) into `doc` in place of the one
    between those markers, or appends it."""
    text = doc.read_text()
    if begin in text:
        text = text[: text.index(begin)] + "\n".join(section) + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + "\n".join(section) + "\n"
    doc.write_text(text)


def percentile(values: list[float], pct: int) -> float | None:
    if len(values) < 2:
        return values[0] if values else None
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


def percentile_ms(seconds: list[float], pct: int) -> float:
    """percentile() of durations in seconds, in milliseconds; 0 when there are none."""
    return percentile([v * 1000 for v in seconds], pct) or 0.0


def scaled(value: float | None, factor: float) -> float | None:
    return None if value is None else value * factor


def map_total(r: PeerResults) -> float | None:
    return r.maps[0]["total_s"] if r.maps else None


def map_rate(r: PeerResults, n: int) -> float | None:
    total = map_total(r)
    return n / total if total else None


@dataclass(frozen=True)
class Metric:
    label: str
    unit: str
    lower_is_better: bool
    value: Callable[[PeerResults], float | None]


def metrics(cold_trials: int, map_inputs: int) -> list[Metric]:
    return [
        Metric(
            f"Cold start, client end to end (median of {cold_trials})",
            "s",
            True,
            lambda r: median_of(r.cold, "latency_s"),
        ),
        Metric(
            "Cold start, process start to input handled (median)",
            "s",
            True,
            lambda r: median_of(r.cold, "process_start_to_handled_s"),
        ),
        Metric("Warm round trip p50", "ms", True, lambda r: scaled(percentile(r.warm_s, 50), 1e3)),
        Metric("Warm round trip p99", "ms", True, lambda r: scaled(percentile(r.warm_s, 99), 1e3)),
        Metric(f"Map of {map_inputs:,} inputs, total", "s", True, map_total),
        Metric(f"Map of {map_inputs:,} inputs, throughput", "inputs/s", False, lambda r: map_rate(r, map_inputs)),
    ]


def fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}" if value >= 1 else f"{value:.3f}"


def verdict(ratio: float, lower_is_better: bool) -> str:
    berth_wins = ratio < 1 if lower_is_better else ratio > 1
    direction = "lower" if lower_is_better else "higher"
    return f"{direction} is better: {'Berth' if berth_wins else 'Ray'}"


def table_row(metric: Metric, berth: PeerResults, ray: PeerResults) -> list[str]:
    b, r = metric.value(berth), metric.value(ray)
    label = f"{metric.label} [{metric.unit}]"
    ray_cell = fmt(r) if ray.cold or ray.warm_s or ray.maps else "unavailable"
    if b is None or r is None or r == 0:
        return [label, fmt(b), ray_cell, "n/a", "n/a"]
    return [label, fmt(b), fmt(r), f"{b / r:.2f}", verdict(b / r, metric.lower_is_better)]


def markdown_table(rows: list[list[str]]) -> str:
    header = ["Metric", "Berth", "Ray", "Berth/Ray", "Better"]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) + " |" for row in [header, *rows]
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def results_table(berth: PeerResults, ray: PeerResults, cold_trials: int, map_inputs: int) -> str:
    return markdown_table([table_row(m, berth, ray) for m in metrics(cold_trials, map_inputs)])


def _read_key(path: str, key: str) -> str:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git_revision() -> str:
    out = subprocess.run(
        ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, cwd=Path(__file__).resolve().parent
    )
    return out.stdout.strip() or "unknown"


def machine_lines() -> list[str]:
    mem_kib = _read_key("/proc/meminfo", "MemTotal").split()[0]
    memory = f"{int(mem_kib) / 2**20:.1f} GiB" if mem_kib.isdigit() else "unknown"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        f"- CPU: {os.cpu_count()} x {_read_key('/proc/cpuinfo', 'model name')}",
        f"- Memory: {memory}",
        f"- Kernel: {platform.system()} {platform.release()} ({platform.machine()})",
        f"- Python: {platform.python_version()} ({platform.python_implementation()})",
        f"- Versions: berth {_version('berth')} (git {_git_revision()}), modal {_version('modal')}, "
        f"ray {_version('ray')}",
        f"- Load average (1, 5, 15 min) when the run started: {load}",
    ]


def now_utc() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _seconds_list(samples: list[Message], key: str) -> str:
    return ", ".join(f"{s[key]:.3f}" for s in samples if key in s) or "none"


def map_detail_lines(m: Message) -> list[str]:
    steady = f"{m['steady_rate']:,.0f} inputs/s" if m.get("steady_rate") else "n/a"
    cpu_ms = (m["client_cpu_s"] + m["workers_cpu_s"]) / m["n"] * 1e3
    return [
        f"  - map: {m['total_s']:.2f} s over {m['workers']} worker processes; first input ran "
        f"{m['first_handled_s']:.2f} s after the call; steady rate (10% to 90% of inputs done) {steady}",
        f"  - map CPU: client {m['client_cpu_s']:.1f} s during the map, workers {m['workers_cpu_s']:.1f} s "
        f"since they started; together {cpu_ms:.2f} ms per input",
    ]


def detail_lines(r: PeerResults) -> list[str]:
    """What sits behind the headline numbers for one peer."""
    lines = [f"- **{r.name}**"]
    if "version" in r.ready:
        lines.append(
            f"  - `ray.init()`: {r.ready['init_s']:.2f} s; first task after it (prestarted worker): "
            f"{r.ready['first_task_s'] * 1e3:.0f} ms"
        )
    lines.append(f"  - cold start, client end to end, each trial [s]: {_seconds_list(r.cold, 'latency_s')}")
    lines.append(
        f"  - cold start, process start to input handled, each trial [s]: "
        f"{_seconds_list(r.cold, 'process_start_to_handled_s')}"
    )
    lines.append(
        f"  - cold start, call to process start (scheduling), each trial [s]: "
        f"{_seconds_list(r.cold, 'call_to_process_start_s')}"
    )
    if any("app_setup_s" in s for s in r.cold):
        lines.append(
            f"  - `app.run()` before each cold call (app, function, mounts; not in the table) [s]: "
            f"{_seconds_list(r.cold, 'app_setup_s')}"
        )
    if r.warm_s:
        mean_ms, min_ms, max_ms = (x * 1e3 for x in (statistics.mean(r.warm_s), min(r.warm_s), max(r.warm_s)))
        lines.append(
            f"  - warm round trips: {len(r.warm_s)} samples, mean {mean_ms:.2f} ms, "
            f"min {min_ms:.2f} ms, max {max_ms:.2f} ms"
        )
    for m in r.maps:
        lines.extend(map_detail_lines(m))
    lines.extend(f"  - error: `{e}`" for e in r.errors)
    return lines


METHODOLOGY = """\
- Both systems run on this one machine in the same `make bench` run: a throwaway `berth up` (process
  runtime, default settings: up to 8 containers per function) driven by the stock modal {modal} SDK in
  one subprocess (`bench/berth_driver.py`), and a local Ray (`ray.init(num_cpus=2,
  include_dashboard=False)`) driven from another (`bench/ray_driver.py`). Work is interleaved: each cold
  trial and each block of warm calls alternates between the two (alternating who goes first), then the
  two maps run back to back. The function is trivial: it returns its pid and `time.time()`.
- **Cold start**, Berth: each trial opens a fresh ephemeral app (`with app.run()`: new app, new
  function, no warm container) and times the first `.remote()` from the client, which includes the
  container's launch. Ray: each trial defines a fresh `@ray.remote` function with its own `runtime_env`
  (a unique env var), which no existing worker can take, so Ray starts a new worker process; the
  client times the first `ray.get(f.remote())`. The first task after `ray.init()` is listed separately
  below: it runs on a worker prestarted by `ray.init()`, so it is not a process start. "Process start to
  input handled" is the time from the handling process's start (`/proc/<pid>/stat`, 10 ms resolution)
  to the moment the function body ran: the container's (or Ray worker's) own start-up cost.
- **Warm round trip**: {warm} sequential calls on a warm container/worker (after {warmup} untimed
  calls), in {rounds} interleaved blocks; `.remote()` for Berth, `ray.get(f.remote(i))` for Ray.
- **Map**: {inputs:,} trivial inputs, `list(f.map(range(n)))` for Berth,
  `ray.get([f.remote(i) for i in range(n)])` for Ray, timed from the client until every result is back.
- **CPU** (in the details): the client's CPU time during the map, the worker processes' (containers'
  or Ray workers') total CPU time since they started, and, for Berth, the server process's CPU time
  during the map, all from `/proc`. Ray's own daemons (raylet, GCS) are not counted.
- The VM has few cores and is shared: other processes (see the load average above) run alongside, so
  treat single numbers as noisy; the ratios in one run are more telling than absolute values.
"""


@dataclass(frozen=True)
class Plan:
    cold_trials: int
    warm_calls: int
    warm_rounds: int
    warmup: int
    map_inputs: int


def render_document(
    plan: Plan, machine: list[str], berth: PeerResults, ray: PeerResults, server_notes: list[str]
) -> str:
    methodology = METHODOLOGY.format(
        modal=_version("modal"),
        warm=plan.warm_calls,
        warmup=plan.warmup,
        rounds=plan.warm_rounds,
        inputs=plan.map_inputs,
    )
    table = results_table(berth, ray, plan.cold_trials, plan.map_inputs)
    parts = [
        "# Benchmarks: Berth vs Ray",
        f"Generated by `make bench` (`bench/run.py`) on {now_utc()}. Rerun it rather than editing this page.",
        "## Machine\n\n" + "\n".join(machine),
        "## Results\n\nBerth/Ray is the ratio of the two values; the last column says which direction is "
        "better for that row and who wins.\n\n" + table,
        "## Details\n\n" + "\n".join(detail_lines(berth) + detail_lines(ray) + server_notes),
        "## Methodology\n\n" + methodology,
    ]
    return "\n\n".join(parts).rstrip() + "\n"
