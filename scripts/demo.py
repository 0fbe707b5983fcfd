"""The README's main job: start `berth up` on a throwaway data dir, run examples/hello.py with the
stock modal CLI, print what it prints, and stop the server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def main() -> int:
    data_dir = Path(tempfile.mkdtemp(prefix="berth-demo-"))
    port = free_port()
    server = subprocess.Popen([BIN / "berth", "up", "--data-dir", data_dir, "--port", str(port)])
    try:
        for _ in range(100):
            if subprocess.run([BIN / "berth", "status", "--data-dir", data_dir], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        else:
            print("berth did not become ready", file=sys.stderr)
            return 1
        exports = subprocess.run(
            [BIN / "berth", "env", "--data-dir", data_dir], capture_output=True, text=True, check=True
        ).stdout
        env = dict(os.environ)
        for assignment in exports.removeprefix("export ").split():
            key, _, value = assignment.partition("=")
            env[key] = value.strip("'")
        return subprocess.run([BIN / "modal", "run", ROOT / "examples" / "hello.py"], env=env).returncode
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
