"""Faults in the middle of work, through the stock CLI against a real `berth up`: a container killed with
SIGKILL mid-input (with a retry policy and without), the server killed with SIGKILL mid-deploy and
mid-volume-upload, and a client killed mid-map and mid-log-stream. Each time every output arrives exactly once
or the caller gets a clear error, the state is whole after a restart, and the server goes on serving."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import APPS, BIN, BerthServer, modal, start_server, stop_server, wait_for
from tests.reliability.record import note


class Servers:
    """The module's one server, which some tests kill and start again on the same data dir and port."""

    def __init__(self, server: BerthServer) -> None:
        self.current = server

    def kill_and_restart(self, down_s: float = 1.0) -> BerthServer:
        old = self.current
        old.proc.kill()
        old.proc.wait()
        time.sleep(down_s)
        self.current = start_server(old.data_dir, extra_env=ENV, port=old.port)
        return self.current


ENV = {"BERTH_APP_HEARTBEAT_TIMEOUT": "20"}  # an ephemeral app whose client died is stopped within 20 s


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    holder = Servers(start_server(tmp_path_factory.mktemp("chaos") / "data", extra_env=ENV))
    yield holder
    stop_server(holder.current)


class Background:
    """A CLI process whose output is collected as it runs."""

    def __init__(self, server: BerthServer, *args: str) -> None:
        self.proc = subprocess.Popen(
            [str(BIN / "modal"), *args],
            cwd=APPS,
            env=server.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(iter(self.proc.stdout.readline, "")))  # type: ignore[union-attr]
        self._reader.daemon = True
        self._reader.start()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait(self, timeout: float = 300) -> int:
        rc = self.proc.wait(timeout=timeout)
        self._reader.join(10)
        return rc


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _map_with_a_killed_container(server: BerthServer, which: str, marker: Path) -> list[object]:
    run = Background(server, "run", "chaos_app.py", "--which", which, "--marker-dir", str(marker))
    try:
        wait_for(lambda: (marker / "pid").exists() and (marker / "pid").read_text(), "the input to park", 120)
        os.kill(int((marker / "pid").read_text()), signal.SIGKILL)
        assert run.wait() == 0, run.output
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
    line = next(x for x in run.lines if x.startswith("RESULT "))
    return list(json.loads(line.removeprefix("RESULT ")))


def test_a_container_killed_mid_input_fails_that_input_clearly_and_no_other(servers: Servers, tmp_path: Path) -> None:
    results = _map_with_a_killed_container(servers.current, "fragile", tmp_path)
    assert [r for i, r in enumerate(results) if i != 3] == [i * i for i in range(8) if i != 3]
    assert isinstance(results[3], str) and "exited with code" in results[3], results  # the kill, named
    note(
        "container SIGKILL mid-input, no retries",
        faults=1,
        outputs_checked=len(results),
        errors=1,
        outcome=f"7 outputs once; the killed input's caller got: {results[3][:80]}",
    )


def test_a_container_killed_mid_input_is_retried_and_every_output_arrives_once(
    servers: Servers, tmp_path: Path
) -> None:
    results = _map_with_a_killed_container(servers.current, "sturdy", tmp_path)
    assert results == [i * i for i in range(8)]
    note(
        "container SIGKILL mid-input, retries=2",
        faults=1,
        outputs_checked=len(results),
        errors=0,
        outcome="every output exactly once, in order",
    )


def test_a_server_killed_mid_deploy_completes_or_fails_clearly_and_a_redeploy_is_consistent(servers: Servers) -> None:
    deploy = Background(servers.current, "deploy", "chaos_app.py", "--name", "e2e-chaos-deploy")
    try:
        wait_for(lambda: "Initialized" in deploy.output or deploy.proc.poll() is not None, "the deploy to start", 60)
        server = servers.kill_and_restart()
        rc = deploy.wait(120)
    finally:
        if deploy.proc.poll() is None:
            deploy.proc.kill()
    # Either outcome is fine, but a failure must say what failed, not hang or print a bare traceback.
    assert rc == 0 or ("Error" in deploy.output and "Traceback" not in deploy.output), deploy.output
    again = modal(server, "deploy", "chaos_app.py", "--name", "e2e-chaos-deploy")
    assert again.returncode == 0, again.output
    listed = [
        a for a in json.loads(modal(server, "app", "list", "--json").stdout) if a["description"] == "e2e-chaos-deploy"
    ]
    assert [a["state"] for a in listed] == ["deployed"], listed
    called = modal(server, "run", "chaos_app.py::slow_square", "--x", "7")
    assert called.returncode == 0, called.output
    note(
        "server SIGKILL mid-deploy",
        faults=1,
        outputs_checked=1,
        errors=0 if rc == 0 else 1,
        outcome=("the deploy completed" if rc == 0 else "the deploy failed clearly")
        + "; redeploy after restart consistent",
    )


def test_a_server_killed_mid_volume_upload_never_leaves_a_torn_file(servers: Servers, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    expected = {f"f{i:03d}.bin": os.urandom(1024 + i * 997) for i in range(300)}
    for name, data in expected.items():
        (src / name).write_bytes(data)
    assert modal(servers.current, "volume", "create", "e2e-chaos-vol").returncode == 0
    blocks = servers.current.data_dir / "volumes" / ".blocks"
    held = set(blocks.iterdir()) if blocks.exists() else set()
    put = Background(servers.current, "volume", "put", "e2e-chaos-vol", str(src), "/d")
    try:
        # Kill it once the first blocks have arrived: the upload is under way, its files not yet assembled.
        wait_for(
            lambda: (blocks.exists() and set(blocks.iterdir()) - held) or put.proc.poll() is not None,
            "the upload to start",
            120,
        )
        server = servers.kill_and_restart()
        put.wait(120)
    finally:
        if put.proc.poll() is None:
            put.proc.kill()
    down = tmp_path / "down"
    down.mkdir()

    def check_whole() -> int:
        got = modal(server, "volume", "get", "--force", "e2e-chaos-vol", "/", str(down))
        assert got.returncode == 0, got.output
        found = {p.name: p.read_bytes() for p in (down / "d").glob("*")} if (down / "d").exists() else {}
        torn = [n for n, data in found.items() if expected.get(n) != data]
        assert torn == [], f"files differ from what was uploaded: {torn}"
        return len(found)

    first = check_whole()
    again = modal(server, "volume", "put", "--force", "e2e-chaos-vol", str(src), "/d")
    assert again.returncode == 0, again.output
    assert check_whole() == len(expected)
    note(
        "server SIGKILL mid-volume-upload",
        faults=1,
        outputs_checked=len(expected),
        errors=0,
        outcome=f"{first} of {len(expected)} files there after the restart, none torn; the re-put completed",
    )


def test_a_client_killed_mid_map_and_mid_log_stream_leaves_the_server_serving_and_frees_its_work(
    servers: Servers,
) -> None:
    server = servers.current
    assert modal(server, "run", "chaos_app.py", "--which", "slow", "--n", "4").returncode == 0  # warm
    baseline = fds(server.proc.pid)
    victim = Background(server, "run", "chaos_app.py", "--which", "slow", "--n", "100000")
    wait_for(lambda: "MAP STARTED" in victim.output, "the long map to start", 120)
    app_id = re.findall(r"ap-[A-Za-z0-9]+", victim.output)[0]  # from the "View run at" URL
    logs = Background(server, "app", "logs", app_id)
    time.sleep(2)
    victim.proc.kill()
    logs.proc.kill()
    victim.wait(30)
    logs.wait(30)
    # Another caller is unaffected, at once.
    other = modal(server, "run", "chaos_app.py", "--which", "slow", "--n", "20")
    assert other.returncode == 0 and "MAP OK 20" in other.stdout, other.output

    def stopped() -> bool:
        apps = json.loads(modal(server, "app", "list", "--json").stdout)
        return any(a["app_id"] == app_id and a["state"] == "stopped" for a in apps)

    wait_for(stopped, "the dead client's app to be stopped", 90)
    wait_for(lambda: "ta-" not in modal(server, "container", "list").stdout, "its containers to stop", 60)
    wait_for(lambda: fds(server.proc.pid) <= baseline + 5, f"the server's fds back near {baseline}", 60)
    note(
        "client SIGKILL mid-map and mid-log-stream",
        faults=2,
        outputs_checked=20,
        errors=0,
        outcome=f"other caller unaffected; app stopped, containers gone; fds {baseline} → {fds(server.proc.pid)}",
    )
