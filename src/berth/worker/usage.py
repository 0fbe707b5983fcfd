"""Metering on a worker: once a second, what each running container has used. CPU comes from a cumulative
counter (the container's cgroup on the OCI runtimes, the process tree's CPU times on the process runtime);
memory is sampled each second and integrated; GPU-seconds are the container's assigned GPUs times the time
it held them. The meter keeps the integrals per task and minute bucket and hands what it measured to a sink
every few seconds, and once more when a task exits (after a last reading: nothing of the tail is lost on
the OCI runtimes, whose cgroup outlives the container's processes until cleanup)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from berth.clock import Clock, SystemClock
from berth.domain.gpu import matches
from berth.domain.spec import TaskSpec
from berth.domain.usage import UsageSample, bucket_of

log = logging.getLogger("berth.worker.usage")

GIB = 1024**3
SAMPLE_S = 1.0
FLUSH_S = 5.0

# What a container has used so far: (CPU core-seconds since it started, bytes of memory it holds now).
Reading = tuple[float, int]
ReadUsage = Callable[[], Reading | None]
UsageSink = Callable[[list[UsageSample]], None]


def process_cpu(pid: int, proc: Path = Path("/proc")) -> float | None:
    """CPU seconds one process has used, with the children it reaped; None once it is gone."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


@dataclass
class SessionCpu:
    """The process runtime's CPU counter for one container (a session whose leader is the entrypoint). Its
    processes' counters vanish when they are reaped, so besides the once-a-second reading of the whole tree
    the leader alone is polled often (cheaply) while it runs: what it used after the last full reading
    still counts once it is gone."""

    session: int
    tree_cpu: float = 0.0
    leader_at_scan: float = 0.0
    leader_latest: float = 0.0

    def poll_leader(self) -> None:
        cpu = process_cpu(self.session)
        if cpu is not None:
            self.leader_latest = max(self.leader_latest, cpu)

    def read(self) -> Reading:
        scanned = session_scan(self.session)
        if scanned is None:
            return self.tree_cpu + max(0.0, self.leader_latest - self.leader_at_scan), 0
        # The leader's counter as that same pass saw it: a pass can be up to _SCAN_TTL_S old, and what the
        # leader used since then is not in tree_cpu yet, so it counts on top, in this reading (the last one, when
        # the container ends within the pass's lifetime) and in those after it once the leader is gone.
        self.tree_cpu, rss, self.leader_at_scan = scanned
        self.leader_latest = max(self.leader_latest, self.leader_at_scan)
        return self.tree_cpu + self.leader_latest - self.leader_at_scan, rss


def session_usages(proc: Path = Path("/proc")) -> dict[int, tuple[int, int, int]]:
    """(CPU ticks, resident pages, the leader's own CPU ticks) of every session on the host, from one pass over
    /proc: each live process's own time and that of the children it reaped."""
    usages: dict[int, tuple[int, int, int]] = {}
    for name in os.listdir(proc):
        if not name.isdigit():
            continue
        try:
            with open(f"{proc}/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()  # after "pid (comm) "; comm may hold spaces
        session = int(fields[3])  # field 6 of stat: the session id
        cpu, rss, leader = usages.get(session, (0, 0, 0))
        ticks = sum(int(f) for f in fields[11:15])  # utime..cstime
        usages[session] = (cpu + ticks, rss + int(fields[21]), ticks if int(name) == session else leader)
    return usages


_SCAN_TTL_S = 0.5
_scan: tuple[float, dict[int, tuple[int, int, int]]] = (-1e9, {})


def session_scan(session_id: int, proc: Path = Path("/proc")) -> tuple[float, int, float] | None:
    """CPU seconds and resident memory of every process in a session (the process runtime starts each
    container as a session of its own), and its leader's own CPU seconds in the same pass; None once no
    process of the session is left. One pass over /proc serves every container's reading of the same second."""
    global _scan
    now = time.monotonic()
    found = _scan[1].get(session_id) if now - _scan[0] <= _SCAN_TTL_S and proc == Path("/proc") else None
    if found is None:  # not in a recent pass (a session started since, say): look again
        _scan = (now, session_usages(proc))
        found = _scan[1].get(session_id)
    if found is None:
        return None
    tick = os.sysconf("SC_CLK_TCK")
    return found[0] / tick, found[1] * os.sysconf("SC_PAGE_SIZE"), found[2] / tick


def process_tree_usage(session_id: int, proc: Path = Path("/proc")) -> Reading | None:
    """CPU seconds and resident memory of every process in a session; None once none is left."""
    scanned = session_scan(session_id, proc)
    return None if scanned is None else (scanned[0], scanned[1])


def gpu_type(spec: TaskSpec) -> str:
    """The name a container's GPUs are priced under: the type it asked for that they match, else their
    model name as nvidia-smi gives it."""
    if not spec.gpus:
        return ""
    for asked, _ in spec.gpu_requests:
        if asked.lower() != "any" and matches(asked, spec.gpus[0]):
            return asked.upper()
    return spec.gpus[0].name


@dataclass
class _Metered:
    spec: TaskSpec
    read: ReadUsage
    last_t: float
    last_cpu: float = 0.0
    # bucket → [cpu core-seconds, memory GiB-seconds, GPU-seconds], not yet handed to the sink
    pending: dict[int, list[float]] = field(default_factory=dict)

    def add(self, t: float, cpu: float, memory: float, gpu: float) -> None:
        acc = self.pending.setdefault(bucket_of(t), [0.0, 0.0, 0.0])
        acc[0] += cpu
        acc[1] += memory
        acc[2] += gpu


class UsageMeter:
    def __init__(self, sink: UsageSink, clock: Clock | None = None) -> None:
        self._sink = sink
        self._clock = clock or SystemClock()
        self._tasks: dict[str, _Metered] = {}
        self._loop: asyncio.Task[None] | None = None

    def track(self, spec: TaskSpec, read: ReadUsage) -> None:
        """Meter a container that has just started; its CPU counter starts at zero."""
        self._tasks[spec.task_id] = _Metered(spec, read, self._clock.now())
        if self._loop is None or self._loop.done():
            try:
                self._loop = asyncio.get_running_loop().create_task(self._run())
            except RuntimeError:  # no event loop (a unit test drives sample_all itself)
                pass

    def finish(self, task_id: str) -> None:
        """The container exited: take a last reading and hand over everything left of it."""
        metered = self._tasks.pop(task_id, None)
        if metered is not None:
            self._sample(metered)
            self._flush([metered])

    def sample(self, task_id: str) -> None:
        """Take a reading now (before the worker stops a container: on the process runtime, whose counters
        vanish with the processes, the time since the last second's reading would be lost)."""
        metered = self._tasks.get(task_id)
        if metered is not None:
            self._sample(metered)

    def sample_all(self) -> None:
        for metered in list(self._tasks.values()):
            self._sample(metered)

    def flush_all(self) -> None:
        self._flush(list(self._tasks.values()))

    def _sample(self, m: _Metered) -> None:
        now = self._clock.now()
        elapsed = max(0.0, now - m.last_t)
        reading = m.read()
        cpu_delta, memory_gib_s = 0.0, 0.0
        if reading is not None:
            cpu, memory = reading
            cpu_delta = max(0.0, cpu - m.last_cpu)  # a counter never goes back (a process left the tree)
            m.last_cpu = max(m.last_cpu, cpu)
            memory_gib_s = memory / GIB * elapsed
        m.add(now, cpu_delta, memory_gib_s, len(m.spec.gpus) * elapsed)
        m.last_t = now

    def _flush(self, tasks: list[_Metered]) -> None:
        samples: list[UsageSample] = []
        for m in tasks:
            spec, sandbox_id = m.spec, m.spec.sandbox.sandbox_id if m.spec.sandbox else ""
            kind = gpu_type(spec)
            for bucket, (cpu, memory, gpu) in sorted(m.pending.items()):
                samples.append(
                    UsageSample(spec.task_id, spec.app_id, spec.function_id, sandbox_id, bucket, cpu, memory, gpu, kind)
                )
            m.pending.clear()
        if samples:
            try:
                self._sink(samples)
            except Exception:
                log.exception("usage sink failed; %d samples lost", len(samples))

    async def _run(self) -> None:
        since_flush = 0.0
        while self._tasks:
            await asyncio.sleep(SAMPLE_S)
            self.sample_all()
            since_flush += SAMPLE_S
            if since_flush >= FLUSH_S:
                self.flush_all()
                since_flush = 0.0

    async def close(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
