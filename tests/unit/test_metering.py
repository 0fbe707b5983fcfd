"""The worker's meter (integrals per task and minute, with time passed in) and billing's pricing and
roll-ups over a real SQLite governance store."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest

from berth.domain.gpu import Gpu
from berth.domain.spec import SandboxSpec, TaskSpec
from berth.domain.usage import UsageSample
from berth.services.billing import BillingService
from berth.services.metering import MeteringService
from berth.store.records import AppRecord, FunctionRecord
from berth.store.sqlite.governance import SqliteGovernanceStore
from berth.worker.cgroups import ContainerCgroup
from berth.worker.usage import GIB, SessionCpu, UsageMeter, process_tree_usage
from tests.contract.backends import migrated_memory_db


class FakeClock:
    def __init__(self, t: float) -> None:
        self.t = t

    def now(self) -> float:
        return self.t

    def monotonic(self) -> float:
        return self.t


def _spec(task_id: str = "ta-1", **kw: object) -> TaskSpec:
    return TaskSpec(task_id, "fu-1", "ap-1", b"", "", "", **kw)  # type: ignore[arg-type]


def test_the_meter_integrates_cpu_and_memory_per_minute_bucket_and_hands_them_over_at_exit() -> None:
    clock = FakeClock(118.0)
    got: list[UsageSample] = []
    readings = iter([(0.5, GIB), (1.5, 2 * GIB), (4.0, 2 * GIB), (4.0, 0)])
    meter = UsageMeter(got.extend, clock)
    meter.track(_spec(), lambda: next(readings))
    for t in (119.0, 120.0, 121.0):  # one second per reading, across the minute at 120
        clock.t = t
        meter.sample_all()
    assert got == []  # nothing handed over before a flush or the exit
    clock.t = 122.0
    meter.finish("ta-1")
    by_bucket = {s.bucket: s for s in got}
    assert set(by_bucket) == {60, 120}
    assert by_bucket[60].cpu_s == pytest.approx(0.5) and by_bucket[60].memory_gib_s == pytest.approx(1.0)
    assert by_bucket[120].cpu_s == pytest.approx(3.5) and by_bucket[120].memory_gib_s == pytest.approx(4.0)
    assert by_bucket[120].gpu_s == 0.0 and by_bucket[120].function_id == "fu-1"


def test_a_cpu_counter_that_drops_counts_nothing_until_it_passes_its_highest_value() -> None:
    clock = FakeClock(0.0)
    got: list[UsageSample] = []
    readings = iter([(3.0, 0), (2.0, 0), (3.5, 0)])
    meter = UsageMeter(got.extend, clock)
    meter.track(_spec(), lambda: next(readings))
    for t in (1.0, 2.0):
        clock.t = t
        meter.sample_all()
    clock.t = 3.0
    meter.finish("ta-1")
    assert sum(s.cpu_s for s in got) == pytest.approx(3.5)


def test_gpu_seconds_are_the_assigned_gpus_times_the_time_held_under_the_type_asked_for() -> None:
    clock = FakeClock(0.0)
    got: list[UsageSample] = []
    gpus = (Gpu(0, "NVIDIA A100-SXM4-40GB", "u0", 40960), Gpu(1, "NVIDIA A100-SXM4-40GB", "u1", 40960))
    meter = UsageMeter(got.extend, clock)
    spec = _spec(gpu_requests=(("A100", 2),), gpus=gpus, sandbox=SandboxSpec("sb-1"))
    meter.track(spec, lambda: None)
    clock.t = 10.0
    meter.finish("ta-1")
    assert [(s.gpu_s, s.gpu_type, s.sandbox_id, s.cpu_s) for s in got] == [(20.0, "A100", "sb-1", 0.0)]


def test_the_process_tree_of_a_session_reports_its_cpu_and_memory() -> None:
    burn = "import time\nt=time.process_time()\nwhile time.process_time()-t<0.5: pass\nimport sys; sys.stdin.read()"
    proc = subprocess.Popen([sys.executable, "-c", burn], stdin=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        reading = process_tree_usage(proc.pid)
        while reading is not None and reading[0] < 0.45 and time.monotonic() < deadline:
            time.sleep(0.05)
            reading = process_tree_usage(proc.pid)
        assert reading is not None
        cpu, rss = reading
        assert 0.45 <= cpu < 5.0 and rss > 1024 * 1024  # /proc counts whole clock ticks
        assert process_tree_usage(os.getpid() + 10_000_000) is None  # no such session
    finally:
        proc.kill()
        proc.wait()


def test_a_session_whose_processes_are_gone_keeps_what_its_leader_used_after_the_last_full_reading() -> None:
    burn = "import time\nt=time.process_time()\nwhile time.process_time()-t<0.6: pass"
    proc = subprocess.Popen([sys.executable, "-c", burn], start_new_session=True)
    counter = SessionCpu(proc.pid)
    first = counter.read()  # a full reading while it has barely started
    assert first is not None and first[0] < 0.6
    while proc.poll() is None:  # the runtime polls the entrypoint while it runs, as its wait() loop does
        counter.poll_leader()
        time.sleep(0.02)
    cpu, memory = counter.read()  # reaped: nothing left to scan
    assert 0.55 <= cpu < 5.0 and memory == 0


def test_what_the_leader_used_after_a_cached_pass_still_counts_once_it_is_gone() -> None:
    # A reading may come from a pass over /proc up to half a second old; the leader's CPU since that pass
    # must not fall between that reading and the leader's exit.
    burn = "import time\nt=time.process_time()\nwhile time.process_time()-t<0.8: pass"
    proc = subprocess.Popen([sys.executable, "-c", burn], start_new_session=True)
    counter = SessionCpu(proc.pid)
    assert process_tree_usage(proc.pid) is not None  # a pass while it has barely started, cached
    time.sleep(0.3)  # burning, within the pass's lifetime
    first = counter.read()  # from the cached pass
    assert first[0] < 0.3
    while proc.poll() is None:
        counter.poll_leader()
        time.sleep(0.02)
    cpu, _ = counter.read()
    assert 0.75 <= cpu < 5.0


def test_the_last_reading_counts_what_the_leader_used_after_a_cached_pass_that_still_saw_it() -> None:
    # The worker's per-second pass over /proc saw the container just before it ended; the reading taken when
    # it exited, within that pass's lifetime, must still count what the leader used in between.
    burn = "import time\nt=time.process_time()\nwhile time.process_time()-t<0.3: pass\nprint(flush=True)\n"
    burn += "t=time.process_time()\nwhile time.process_time()-t<0.3: pass"
    proc = subprocess.Popen([sys.executable, "-c", burn], start_new_session=True, stdout=subprocess.PIPE)
    counter = SessionCpu(proc.pid)
    assert proc.stdout is not None and proc.stdout.readline() == b"\n"  # halfway
    assert counter.read()[0] < 0.45  # a full pass, cached
    while proc.poll() is None:
        counter.poll_leader()
        time.sleep(0.02)
    cpu, _ = counter.read()  # within the pass's lifetime, which still lists the session
    assert 0.55 <= cpu < 5.0


class _Records:
    async def get_app(self, app_id: str) -> AppRecord | None:
        return AppRecord(app_id, "shop", "", 1, "prod", 0.0)

    async def get_function(self, function_id: str) -> FunctionRecord | None:
        return FunctionRecord(function_id, "ap-1", "checkout", b"")


async def test_a_report_prices_usage_per_function_and_interval_with_the_operators_rates() -> None:
    store = SqliteGovernanceStore(migrated_memory_db())
    metering = MeteringService(store, _Records(), FakeClock(0.0))  # type: ignore[arg-type]
    billing = BillingService(store, metering)
    await store.set_app_tags("ap-1", {"team": "pay", "cost-center": "7"})
    await billing.set_rates({"cpu": "2", "memory": "0.5", "gpu:A100": "10"})
    day = 86400 * 20000
    await metering.record(
        [
            UsageSample("ta-1", "ap-1", "fu-1", "", day + 60, 3.0, 4.0),
            UsageSample("ta-1", "ap-1", "fu-1", "", day + 3600, 1.0, 0.0, 2.0, "A100"),
            UsageSample("ta-2", "ap-1", "fu-1", "", day + 86400, 5.0, 0.0),
        ]
    )
    daily = await billing.report(day, day + 86400, "d", ["team"])
    assert [(i.object_id, i.description, i.environment, i.interval_start) for i in daily] == [
        ("fu-1", "shop.checkout", "prod", day)
    ]
    assert daily[0].cost_by_resource == {"CPU": Decimal(8), "Memory": Decimal(2), "A100": Decimal(20)}
    assert daily[0].cost == Decimal(30) and daily[0].tags == {"team": "pay"}
    hourly = await billing.report(day, day + 2 * 86400, "h", ["*"])
    assert [i.interval_start - day for i in hourly] == [0, 3600, 86400]
    assert hourly[0].tags == {"team": "pay", "cost-center": "7"}
    assert await billing.report(day, day + 86400, "d", environments={"dev"}) == []
    rollup = await metering.rollup(day, day + 2 * 86400, "tag:team")
    assert [(u.key, u.cpu_s, u.gpu_s) for u in rollup] == [("pay", 9.0, {"A100": 2.0})]


async def test_a_summary_covers_one_calendar_month_and_rates_fall_back_to_the_defaults() -> None:
    store = SqliteGovernanceStore(migrated_memory_db())
    metering = MeteringService(store, _Records(), FakeClock(0.0))  # type: ignore[arg-type]
    billing = BillingService(store, metering)
    dec1, jan1 = 1796083200.0, 1798761600.0  # 2026-12-01 and 2027-01-01, UTC
    await metering.record([UsageSample("ta-1", "ap-1", "fu-1", "", int(dec1), 1000.0, 0.0)])
    await metering.record([UsageSample("ta-1", "ap-1", "fu-1", "", int(jan1), 1000.0, 0.0)])
    end, breakdown = await billing.summary(dec1)
    assert end == jan1
    assert breakdown == {"CPU": Decimal("0.0131"), "Memory": Decimal(0)}  # 1000 s at the default CPU rate
    assert (await billing.summary(dec1, "elsewhere"))[1] == {}
    with pytest.raises(Exception, match="first of a month"):
        await billing.summary(dec1 + 3600)
    with pytest.raises(Exception, match="not a number"):
        await billing.set_rates({"cpu": "lots"})
    with pytest.raises(Exception, match="Unknown resource"):
        await billing.set_rates({"disk": "1"})


def test_a_containers_cgroup_reads_cpu_and_working_set_on_v1_and_v2(tmp_path: Path) -> None:
    v1 = tmp_path / "v1"
    cg = ContainerCgroup("berth-ta-1", base="/outer", root=v1)
    (v1 / "cpuacct/outer/berth/berth-ta-1").mkdir(parents=True)
    (v1 / "memory/outer/berth/berth-ta-1").mkdir(parents=True)
    (v1 / "cpuacct/outer/berth/berth-ta-1/cpuacct.usage").write_text("2500000000\n")
    (v1 / "memory/outer/berth/berth-ta-1/memory.usage_in_bytes").write_text("300\n")
    (v1 / "memory/outer/berth/berth-ta-1/memory.stat").write_text("cache 200\ntotal_inactive_file 100\n")
    assert cg.usage() == (2.5, 200)
    v2 = tmp_path / "v2"
    (v2 / "berth/berth-ta-1").mkdir(parents=True)
    (v2 / "cgroup.controllers").write_text("cpu memory\n")
    (v2 / "berth/berth-ta-1/cpu.stat").write_text("usage_usec 1500000\nuser_usec 1000000\n")
    (v2 / "berth/berth-ta-1/memory.current").write_text("4096\n")
    (v2 / "berth/berth-ta-1/memory.stat").write_text("anon 4000\ninactive_file 96\n")
    assert ContainerCgroup("berth-ta-1", root=v2).usage() == (1.5, 4000)
    assert ContainerCgroup("berth-ta-gone", root=v2).usage() is None
