"""Start a throwaway `berth up` (process runtime) for the benchmark, and stop it again."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

READY_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class BerthServer:
    env: dict[str, str]  # the process environment plus what `berth env` exports
    log_path: Path
    pid: int


def free_port_pair() -> int:
    """A port p with p and p + 1 (Berth's HTTP side) both free right now."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no free pair of ports")


def parse_exports(exports: str) -> dict[str, str]:
    """`export A=1 B='2'` (what `berth env` prints) as a dict."""
    env: dict[str, str] = {}
    for line in exports.splitlines():
        for assignment in line.removeprefix("export ").split():
            key, _, value = assignment.partition("=")
            env[key] = value.strip("'\"")
    return env


def wait_ready(berth: Path, data_dir: Path, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"berth up exited with code {proc.returncode}")
        if subprocess.run([berth, "status", "--data-dir", data_dir], capture_output=True).returncode == 0:
            return
        time.sleep(0.1)
    raise RuntimeError(f"berth did not become ready within {READY_TIMEOUT_S:.0f}s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGINT (Berth stops its containers), then SIGKILL if it hangs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def berth_server(
    bin_dir: Path, log_path: Path, runtime: str = "process", env: dict[str, str] | None = None
) -> Iterator[BerthServer]:
    """`berth up` on a temporary data dir and free port (with `env` on top of this process's environment);
    its output goes to log_path."""
    berth = bin_dir / "berth"
    data_dir = Path(tempfile.mkdtemp(prefix="berth-bench-"))
    port = free_port_pair()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [berth, "up", "--data-dir", data_dir, "--port", str(port), "--runtime", runtime],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    try:
        wait_ready(berth, data_dir, proc)
        exports = subprocess.run(
            [berth, "env", "--data-dir", data_dir], capture_output=True, text=True, check=True
        ).stdout
        yield BerthServer({**os.environ, **parse_exports(exports)}, log_path, proc.pid)
    finally:
        stop(proc)
        shutil.rmtree(data_dir, ignore_errors=True)
