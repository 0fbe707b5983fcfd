"""modal.Period and modal.Cron schedules: they run on ephemeral apps while the app runs and on
deployed apps, every tick exactly once, across a server restart too; a malformed cron is refused."""

from __future__ import annotations

import re
import sqlite3
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import APPS, BerthServer, modal, python, run_cmd, start_server, stop_server

_PERIOD = re.compile(r"period run at (\d+\.\d+)")
_CRON = re.compile(r"cron run at (\d+\.\d+)")
_SLOW = re.compile(r"slow run starts at (\d+\.\d+) in container (\w+)")


@pytest.fixture(scope="module")
def ephemeral_run(berth: BerthServer) -> str:
    run = python(berth, "schedules.py", "66", timeout=300)
    assert run.returncode == 0, run.output
    return run.output


def test_period_runs_every_tick_once_while_the_ephemeral_app_runs(ephemeral_run: str) -> None:
    times = sorted(float(t) for t in _PERIOD.findall(ephemeral_run))
    # 66 s of a 3 s period: about 21 ticks (the first is due 3 s after the function is created). Fewer
    # would mean lost ticks, more would mean doubled ones.
    assert 18 <= len(times) <= 23, ephemeral_run
    # Ticks that fell due while the first container started run together; after that, one per period.
    gaps = [b - a for a, b in zip(times[-10:], times[-9:], strict=False)]
    assert all(2.0 < g < 4.0 for g in gaps), gaps


def test_cron_with_timezone_fires_at_the_minute_and_shows_in_the_logs(ephemeral_run: str) -> None:
    times = [float(t) for t in _CRON.findall(ephemeral_run)]
    assert 1 <= len(times) <= 2, ephemeral_run
    for t in times:
        assert t % 60 < 15, f"cron run at second {t % 60:.1f} of its minute"


def test_overlapping_runs_each_start_on_their_tick(ephemeral_run: str) -> None:
    # A 9 s run on a 4 s period: every tick still starts its run, in another container if need be.
    starts = sorted((float(t), container) for t, container in _SLOW.findall(ephemeral_run))
    assert 12 <= len(starts) <= 17, ephemeral_run
    assert len({container for _, container in starts}) >= 2
    gaps = [b[0] - a[0] for a, b in zip(starts[-6:], starts[-5:], strict=False)]
    assert all(2.0 < g < 6.5 for g in gaps), gaps


def test_schedules_stop_with_the_ephemeral_app(berth: BerthServer, ephemeral_run: str) -> None:
    before = _dict_len(berth, "e2e-schedule-runs")
    time.sleep(7)
    assert _dict_len(berth, "e2e-schedule-runs") == before


def _dict_len(berth: BerthServer, name: str) -> int:
    code = f"import modal; print(modal.Dict.from_name({name!r}).len())"
    run = run_cmd(berth, [sys.executable, "-c", code], timeout=120)
    assert run.returncode == 0, run.output
    return int(run.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("command", ["run", "deploy"])
def test_malformed_cron_fails_at_creation_with_a_clear_error(berth: BerthServer, command: str) -> None:
    run = modal(berth, command, "bad_cron.py", timeout=120)
    assert run.returncode != 0
    assert "Invalid cron string '61 * * * *'" in run.output
    assert "entrypoint ran" not in run.output


def _ticks(data_dir: Path) -> list[tuple[float, str]]:
    db = sqlite3.connect(f"file:{data_dir / 'berth.db'}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT t.tick_at, i.state FROM schedule_ticks t JOIN inputs i ON i.input_id = t.input_id "
            "JOIN functions f ON f.function_id = t.function_id WHERE f.tag = 'tick' ORDER BY t.tick_at"
        ).fetchall()
    finally:
        db.close()
    return [(float(r[0]), str(r[1])) for r in rows]


def test_deployed_schedule_loses_and_doubles_no_tick_across_a_server_restart(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data")
    try:
        deploy = modal(server, "deploy", str(APPS / "deployed_schedule.py"), timeout=120)
        assert deploy.returncode == 0, deploy.output
        time.sleep(7)
        assert stop_server(server) == 0
        time.sleep(7)  # ticks fall due while the server is down
        server = start_server(tmp_path / "data")
        time.sleep(10)
        ticks = _ticks(tmp_path / "data")
        logs = modal(server, "app", "logs", "e2e-deployed-schedule", timeout=120)
        assert logs.returncode == 0 and "deployed tick ran" in logs.output, logs.output
        stopped = modal(server, "app", "stop", "--yes", "e2e-deployed-schedule", timeout=120)
        assert stopped.returncode == 0, stopped.output
    finally:
        if server.proc.poll() is None:
            stop_server(server)
    times = [t for t, _ in ticks]
    # One input per tick, on the period's grid, with no gap: the downtime's ticks fired after the restart.
    assert len(times) >= 10
    gaps = [round(b - a, 3) for a, b in zip(times, times[1:], strict=False)]
    assert set(gaps) == {2.0}, gaps
    assert len(set(times)) == len(times)
