"""Autoscaling and reuse of containers, and a clean stop of the whole server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import APPS, BerthServer, python, start_server, stop_server


@pytest.fixture(scope="module")
def scaling(berth: BerthServer) -> dict[str, Any]:
    run = python(berth, "scaling.py", timeout=300)
    assert run.returncode == 0, run.output
    line = next(x for x in run.stdout.splitlines() if x.startswith("RESULT "))
    return dict(json.loads(line.removeprefix("RESULT ")))


def test_queued_inputs_start_more_containers_up_to_max_containers(scaling: dict[str, Any]) -> None:
    assert 1 < scaling["busy_pids"] <= 3


def test_warm_container_serves_consecutive_calls(scaling: dict[str, Any]) -> None:
    assert scaling["warm_pids"] == 1


def test_container_is_retired_after_its_scaledown_window(scaling: dict[str, Any]) -> None:
    assert scaling["after_window_new_container"] is True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_server_stop_leaves_no_container_behind(tmp_path: Path, signum: int) -> None:
    server = start_server(tmp_path / "data")
    note = tmp_path / "pid"
    client = subprocess.Popen(
        [sys.executable, "long_call.py", str(note)],
        cwd=APPS,
        env=server.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not (note.exists() and note.read_text()) and time.monotonic() < deadline:
            time.sleep(0.1)
        container_pid = int(note.read_text())
        assert _alive(container_pid)
        server.proc.send_signal(signum)
        assert server.proc.wait(timeout=60) == 0
        deadline = time.monotonic() + 10
        while _alive(container_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(container_pid)
    finally:
        client.kill()
        client.wait()
        if server.proc.poll() is None:
            stop_server(server)
