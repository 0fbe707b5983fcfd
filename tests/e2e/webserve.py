"""`modal serve` as a background process for the web end-to-end tests: it collects the URLs the CLI
prints (`Created Function NAME` then the URL, or `Cls.method -> URL` for class endpoints)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import APPS, BIN, BerthServer

_CREATED = re.compile(r"Created Function (\S+)")
_METHOD_URL = re.compile(r"(\S+) -> (https?://\S+)")
_URL = re.compile(r"(https?://[^\s]+)")


class Serve:
    def __init__(self, berth: BerthServer, app_file: str, cwd: Path = APPS, extra_env: dict[str, str] | None = None):
        env = {**berth.env, "MODAL_SERVE_TIMEOUT": "900", "COLUMNS": "200", **(extra_env or {})}
        self.proc = subprocess.Popen(
            [str(BIN / "modal"), "serve", app_file],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self.urls: dict[str, str] = {}
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        current = None
        for line in self.proc.stdout:
            self.lines.append(line)
            if m := _CREATED.search(line):
                current = m.group(1).rstrip(".")
            elif m := _METHOD_URL.search(line):
                self.urls[m.group(1)] = m.group(2)
            elif (m := _URL.search(line)) and current and "apps/" not in line:
                self.urls.setdefault(current, m.group(1))

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float = 120, after: int = 0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in "".join(self.lines[after:]):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"{text!r} did not appear in modal serve output:\n{self.output}")

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=10)
        return self.output


def crun_server(request: pytest.FixtureRequest) -> BerthServer:
    """A server on crun: the shared one when the suite already runs on crun (two crun servers on one host
    would share its container state), else the dedicated berth_oci server."""
    if os.environ.get("BERTH_E2E_RUNTIME", "process") == "crun":
        server: BerthServer = request.getfixturevalue("berth")
    else:
        server = request.getfixturevalue("berth_oci")
    return server
