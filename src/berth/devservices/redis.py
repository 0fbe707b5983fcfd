"""Starts a private redis-server on loopback: no persistence, its files in a given directory. The contract
suite, the e2e smoke and the local-cluster script use it; production points BERTH_REDIS_URL at its own
Redis."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SETUP_HINT = "redis-server not found: install it with scripts/setup-services.sh (root; CI runs it)"


class RedisUnavailable(RuntimeError):
    pass


@dataclass
class RedisServer:
    url: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    def stop(self) -> None:
        """Stops this server (by its own pid) and waits for it."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(directory: Path, timeout_s: float = 15.0) -> RedisServer:
    """A redis-server on 127.0.0.1 at a free port, ready to serve. Raises RedisUnavailable when the binary
    is missing or the server does not come up (another process may take the port first: then retries)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RedisUnavailable(SETUP_HINT)
    directory.mkdir(parents=True, exist_ok=True)
    for _ in range(3):
        server = _launch(binary, directory, _free_port(), timeout_s)
        if server is not None:
            return server
    raise RedisUnavailable(f"redis-server did not start; see {directory / 'redis.log'}")


def _launch(binary: str, directory: Path, port: int, timeout_s: float) -> RedisServer | None:
    log_path = directory / "redis.log"
    args = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    args += ["--dir", str(directory), "--daemonize", "no", "--logfile", str(log_path)]
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return None
        if _answers_ping(port):
            return RedisServer(f"redis://127.0.0.1:{port}/0", port, proc, log_path)
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    return None
