"""A server killed with kill -9 in the middle of a `modal run` map and started again two seconds later: the
run finishes with every output, in order, and exits 0. The listening sockets outlive the killed server
(berth.listeners), so the client's reconnects wait in their backlog instead of being refused."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

from tests.e2e.conftest import APPS, BIN, start_server, stop_server, wait_for
from tests.reliability.record import note


def _keepers(data_dir: Path) -> list[int]:
    """Pids of the processes keeping this data dir's listening sockets."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"berth.listeners" in argv and str(data_dir / "listeners.sock").encode() in argv:
            found.append(int(proc.name))
    return found


def test_a_restart_in_the_middle_of_a_map_is_invisible_to_the_client(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = start_server(data_dir)
    env = server.env
    run = subprocess.Popen(
        [str(BIN / "modal"), "run", str(APPS / "restart_map.py")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(run.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    restarted = None
    try:
        # Kill it once the map is under way, then start it again on the same port.
        wait_for(lambda: any("Created Function square" in line for line in lines), "the app to be created", 120)
        time.sleep(3)
        assert run.poll() is None, "the map finished before the server could be killed: make it longer"
        server.proc.kill()
        server.proc.wait()
        assert _keepers(data_dir), "no process holds the listening sockets while the server is down"
        time.sleep(2)
        restarted = start_server(data_dir, port=server.port)
        run.wait(timeout=300)
        reader.join(10)
        output = "".join(lines)
        assert run.returncode == 0, output
        assert "MAP OK 1500" in output
        assert "adopted the listening sockets" in restarted.log()
        note(
            "server SIGKILL mid-map (1,500 inputs)",
            faults=1,
            outputs_checked=1500,
            errors=0,
            outcome="every output once, in order; the client exited 0",
        )
    finally:
        if run.poll() is None:
            run.kill()
        if restarted is not None:
            stop_server(restarted)
        elif server.proc.poll() is None:  # failed before the kill: stop the first server instead
            stop_server(server)
    # A clean stop releases the sockets: nothing keeps the port once the server is gone.
    wait_for(lambda: not _keepers(data_dir), "the sockets' keeper to exit after a clean stop", 10)
