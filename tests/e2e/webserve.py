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
# modal 1.6.4 (serving._restart_serve) waits at most 5 s for a reload's child process, then drops the only
# reference to the child's `is_ready` Event, whose named semaphore is unlinked on the spot. A child that had
# not yet unpickled its arguments by then (it first imports the modal CLI: seconds on a loaded host) dies
# here, and the change that started it is never served. The next change starts a new child.
_LOST_RELOAD = re.compile(r"SemLock\._rebuild\(.*\n(?:.*\n)*?FileNotFoundError")
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

    def wait_for(self, text: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"{text!r} did not appear in modal serve output:\n{self.output}")

    def wait_watching(self, directory: Path, timeout: float = 120) -> None:
        """Wait until the CLI's file watcher is armed on `directory`. It prints "Serving..." before it
        creates the watcher (modal/_watcher.py), so an edit made as soon as that line shows can go unseen;
        the watcher is an inotify watch on the directory, which /proc shows once it exists."""
        inode = directory.stat().st_ino
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if inode in _inotify_watched_inodes(self.proc.pid):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"modal serve never watched {directory}:\n{self.output}")

    def edit(self, path: Path, text: str, expect: str, timeout: float = 300) -> None:
        """Write `text` to the served file and wait until the reload it starts prints `expect`.

        A reload the client itself lost (_LOST_RELOAD: its child died before it sent a single request) is
        started again the way a user would, by saving the file again; whatever else happens fails."""
        deadline = time.monotonic() + timeout
        lost = 0
        while time.monotonic() < deadline:
            mark = len(self.lines)
            path.write_text(text)
            while time.monotonic() < deadline and self.proc.poll() is None:
                new = "".join(self.lines[mark:])
                if expect in new:
                    return
                if _LOST_RELOAD.search(new):
                    lost += 1
                    print(f"modal serve lost reload {lost} of {path} (child died in SemLock._rebuild); saving again")
                    break
                time.sleep(0.1)
            else:
                break
        raise AssertionError(f"{expect!r} did not appear after an edit of {path} ({lost} lost):\n{self.output}")

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


def _inotify_watched_inodes(pid: int) -> set[int]:
    """Inodes that the inotify instances of process `pid` watch (from /proc/PID/fdinfo)."""
    inodes: set[int] = set()
    fds = Path(f"/proc/{pid}/fd")
    try:
        for fd in fds.iterdir():
            if os.readlink(fd) != "anon_inode:inotify":
                continue
            for line in (Path(f"/proc/{pid}/fdinfo") / fd.name).read_text().splitlines():
                if line.startswith("inotify wd:"):
                    fields = dict(f.split(":", 1) for f in line.split()[1:] if ":" in f)
                    inodes.add(int(fields["ino"], 16))
    except (FileNotFoundError, ProcessLookupError):
        pass  # the process or one of its fds went away while being read
    return inodes


def crun_server(request: pytest.FixtureRequest) -> BerthServer:
    """A server on crun: the shared one when the suite already runs on crun (two crun servers on one host
    would share its container state), else the dedicated berth_oci server."""
    if os.environ.get("BERTH_E2E_RUNTIME", "process") == "crun":
        server: BerthServer = request.getfixturevalue("berth")
    else:
        server = request.getfixturevalue("berth_oci")
    return server
