"""End-to-end fixtures: a real `berth up` server with its local worker, and helpers that drive the
unmodified modal CLI and SDK against it in subprocesses."""

from __future__ import annotations

import ast
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

BIN = Path(sys.executable).parent
APPS = Path(__file__).parent / "apps"


def _ignore_sigint(signum: int, frame: object) -> None:
    pass


# Tests stop clients (`modal serve`, an app.run() script) with SIGINT, as Ctrl-C would. A run started in the
# background by a non-interactive shell (`make test &`, as a CI runner may do) inherits SIGINT ignored, and an
# ignored signal stays ignored across exec: every client would ignore it too (Python then installs no
# KeyboardInterrupt handler), and never stop. A signal this process handles is reset to the default in each
# child at exec, so a handler that ignores it keeps this process as it was and gives the clients what a
# terminal gives them.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, _ignore_sigint)


def _free_port() -> int:
    # The server takes PORT and PORT+1 (HTTP); pick a pair that is free now.
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        with socket.socket() as s2:
            try:
                s2.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair")


@dataclass
class BerthServer:
    data_dir: Path
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def env(self) -> dict[str, str]:
        out = subprocess.run(
            [BIN / "berth", "env", "--data-dir", self.data_dir], capture_output=True, text=True, check=True
        ).stdout
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODAL_")}
        for assignment in shlex.split(out.removeprefix("export ")):
            key, _, value = assignment.partition("=")
            env[key] = value
        env["MODAL_CONFIG_PATH"] = str(self.data_dir / "client.toml")
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


# The suite's runtime: BERTH_E2E_RUNTIME=crun runs it all on isolated containers. The default is the
# process runtime (berth up's own default is crun); tests of isolation ask for crun themselves.
SUITE_RUNTIME = os.environ.get("BERTH_E2E_RUNTIME", "process")


def start_server(
    data_dir: Path,
    extra_env: dict[str, str] | None = None,
    extra_args: list[str] | None = None,
    port: int | None = None,
) -> BerthServer:
    extra_args = list(extra_args or [])
    if "--runtime" not in extra_args:
        extra_args += ["--runtime", SUITE_RUNTIME]
    port = port or _free_port()
    log_path = data_dir.parent / f"{data_dir.name}-server.log"
    env = {**os.environ, **(extra_env or {})}
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [BIN / "berth", "up", "--data-dir", data_dir, "--port", str(port), *extra_args],
            stdout=log,
            stderr=log,
            env=env,
        )
    for _ in range(200):
        if proc.poll() is not None:
            raise RuntimeError(f"berth up exited: {log_path.read_text()}")
        ok = subprocess.run([BIN / "berth", "status", "--data-dir", data_dir], capture_output=True)
        if ok.returncode == 0:
            return BerthServer(data_dir, port, proc, log_path)
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("berth up did not become ready")


def stop_server(server: BerthServer) -> int:
    server.proc.send_signal(signal.SIGINT)
    return server.proc.wait(timeout=60)


@pytest.fixture(scope="session")
def berth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BerthServer]:
    server = start_server(tmp_path_factory.mktemp("berth") / "data")
    yield server
    stop_server(server)


@pytest.fixture(scope="session")
def berth_oci(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BerthServer]:
    """A server whose containers run isolated on crun (root, after scripts/setup-host.sh)."""
    if os.geteuid() != 0:
        pytest.skip("the crun runtime needs root")
    server = start_server(tmp_path_factory.mktemp("berth-oci") / "data", extra_args=["--runtime", "crun"])
    yield server
    stop_server(server)


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_cmd(berth: BerthServer, args: list[str], timeout: float = 300, env: dict[str, str] | None = None) -> Run:
    proc = subprocess.run(
        args, cwd=APPS, env={**berth.env, **(env or {})}, capture_output=True, text=True, timeout=timeout
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


def modal(berth: BerthServer, *args: str, timeout: float = 300, env: dict[str, str] | None = None) -> Run:
    return run_cmd(berth, [str(BIN / "modal"), *args], timeout=timeout, env=env)


def python(berth: BerthServer, *args: str, timeout: float = 300, env: dict[str, str] | None = None) -> Run:
    return run_cmd(berth, [sys.executable, *args], timeout=timeout, env=env)


def sdk(berth: BerthServer, code: str, timeout: float = 240) -> str:
    """Run a snippet of SDK code (dedented) in a fresh client process; returns its stdout."""
    run = python(berth, "-c", textwrap.dedent(code), timeout=timeout)
    assert run.returncode == 0, run.output
    return run.stdout


def call_remote(berth: BerthServer, app: str, fn: str, *args: object) -> Any:
    """`fn.remote(*args)` of tests/e2e/apps/<app>.py in a fresh client process; its result (a literal)."""
    code = (
        "import sys; sys.path.insert(0, '.')\n"
        f"from {app} import app, {fn}\n"
        "with app.run():\n"
        f"    print('RESULT=' + repr({fn}.remote(*{args!r})))\n"
    )
    run = python(berth, "-c", code, timeout=900)
    assert run.returncode == 0, run.output
    line = [x for x in run.stdout.splitlines() if x.startswith("RESULT=")][-1]
    return ast.literal_eval(line.removeprefix("RESULT="))


def last_json(out: str) -> dict[str, Any]:
    """The JSON object a snippet printed on its last line."""
    return dict(json.loads(out.strip().splitlines()[-1]))


def wait_for(check: Callable[[], object], what: str, timeout: float = 60) -> None:
    """Poll `check` until it is true; AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
