"""The orchestrator's end of bench/protocol.py: one driver subprocess per system under test."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

from protocol import Message, parse

BENCH_DIR = Path(__file__).resolve().parent


class Peer:
    """A driver subprocess. Requests never raise: a dead, failing or silent driver answers {"error": ...}."""

    def __init__(self, name: str, script: str, env: dict[str, str], stderr_path: Path) -> None:
        self.name = name
        self.stderr_path = stderr_path
        self.error: str | None = None  # set once the driver is unusable
        self._messages: queue.Queue[Message | None] = queue.Queue()
        with stderr_path.open("w") as stderr:
            self._proc = subprocess.Popen(
                [sys.executable, str(BENCH_DIR / script)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=env,
                text=True,
                bufsize=1,
            )
        threading.Thread(target=self._read, args=(self._proc.stdout,), daemon=True).start()

    def _read(self, stdout: IO[str]) -> None:
        for line in stdout:
            message = parse(line)
            if message is not None:
                self._messages.put(message)
        self._messages.put(None)  # EOF

    def receive(self, timeout_s: float) -> Message:
        if self.error is not None:
            return {"error": self.error}
        try:
            message = self._messages.get(timeout=timeout_s)
        except queue.Empty:
            self.error = f"{self.name} driver gave no answer within {timeout_s:.0f}s"
            self._proc.kill()
            return {"error": self.error}
        if message is None:
            self.error = f"{self.name} driver exited (code {self._proc.wait()}); see {self.stderr_path}"
            return {"error": self.error}
        if message.get("op") == "ready" and "error" in message:
            self.error = str(message["error"])
        return message

    def request(self, command: Message, timeout_s: float) -> Message:
        if self.error is not None:
            return {"error": self.error}
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(json.dumps(command) + "\n")
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError):
            return self.receive(timeout_s=1.0)
        return self.receive(timeout_s)

    def close(self, timeout_s: float = 60.0) -> None:
        if self._proc.poll() is None and self.error is None:
            self.request({"op": "quit"}, timeout_s)
        try:
            self._proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
