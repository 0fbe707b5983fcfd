"""PTY execs, `modal shell` and `modal container exec` through the stock client, and the V1 sandbox path (the
client's for gpu= and sandbox_v2=false). The interactive ones run the CLI in a detached tmux session with a
fixed window size, type into it with send-keys and read the screen with capture-pane."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import APPS, BIN, BerthServer, last_json, modal, python
from tests.e2e.test_registry import images, registry  # noqa: F401  (fixtures: a loopback registry)

ROWS, COLS = 31, 97  # the test terminal's size: not a default anything would fall back to
TERM = "vt100"  # the test terminal's TERM: not the default (xterm-256color) the router falls back to

HEAD = """
import json, time, modal
from modal.exception import *
app = modal.App.lookup({app!r}, create_if_missing=True)
image = modal.Image.debian_slim()
"""


def run(server: BerthServer, app: str, body: str, env: dict[str, str] | None = None) -> dict:  # type: ignore[type-arg]
    code = HEAD.format(app=app) + textwrap.dedent(body)
    ran = python(server, "-c", code, timeout=240, env=env)
    assert ran.returncode == 0, ran.output
    return last_json(ran.stdout)


V1 = {"MODAL_SANDBOX_V2": "0"}  # the client's own switch: every sandbox takes the V1 RPCs


@dataclass
class Terminal:
    """A detached tmux session (on its own server socket) running one command."""

    prefix: str
    env: dict[str, str]
    started: int = 0  # each start gets a tmux server of its own (a killed one takes a moment to go)

    @property
    def socket(self) -> str:
        return f"{self.prefix}-{self.started}"

    def tmux(self, *args: str) -> str:
        out = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, env=self.env)
        assert out.returncode == 0, out.stderr
        return out.stdout

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)
        Path(f"/tmp/tmux-{os.getuid()}/{self.socket}").unlink(missing_ok=True)  # (tmux leaves it at times)

    def start(self, command: str) -> None:
        if self.started:
            self.close()
        self.started += 1
        # the command's own exit status lands on the screen after it, and the pane stays for capture
        # (tmux sets TERM in its panes to its own; the client reports the TERM it runs under)
        wrapped = f"cd {APPS} && export TERM={TERM} && {command}; echo COMMAND-EXIT=$?; sleep 600"
        self.tmux("new-session", "-d", "-s", "t", "-x", str(COLS), "-y", str(ROWS), wrapped)

    def type(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "t", *keys)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-J", "-S", "-200", "-t", "t")

    def wait_for(self, text: str, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.2)
        raise AssertionError(f"{text!r} never showed; the screen:\n{self.screen()}")


@contextlib.contextmanager
def _terminal(server: BerthServer, tmp_path: Path) -> Iterator[Terminal]:
    if shutil.which("tmux") is None:
        pytest.fail("tmux is not installed: run `make test-host` (apt-get install tmux)")
    env = {**server.env, "PATH": f"{BIN}:/usr/bin:/bin"}
    term = Terminal(f"berth-test-{tmp_path.name}", env)
    try:
        yield term
    finally:
        term.close()


@pytest.fixture
def terminal(berth_oci: BerthServer, tmp_path: Path) -> Iterator[Terminal]:
    with _terminal(berth_oci, tmp_path) as term:
        yield term


SHELL_CHECKS = "stty size; echo TERM=$TERM; tty; echo MARK=$SHELL_APP_MARK SECRET=$SHELL_APP_SECRET"


def _drive_shell(term: Terminal) -> str:
    """Size, TERM, a controlling terminal with job control (^C ends the foreground job, not the shell), then
    `exit 3`; returns the screen once the CLI has exited."""
    term.wait_for("# ")  # the shell's prompt
    term.type(SHELL_CHECKS, "Enter")
    term.wait_for("MARK=")
    term.type("sleep 300; echo NOT-INTERRUPTED", "Enter")
    time.sleep(1.0)
    term.type("C-c")
    term.type("echo STILL-HERE", "Enter")
    term.wait_for("\nSTILL-HERE")
    term.type("exit 3", "Enter")
    return term.wait_for("COMMAND-EXIT=")


def test_modal_shell_in_a_functions_image_with_a_real_terminal(terminal: Terminal) -> None:
    terminal.start("modal shell shell_app.py::shelled")
    screen = _drive_shell(terminal)
    assert f"\n{ROWS} {COLS}\n" in screen  # the window size of the client's terminal
    assert f"\nTERM={TERM}\n" in screen
    assert "\n/dev/pts/0\n" in screen  # a terminal of the container's own
    assert "MARK=from-the-image SECRET=s3cret" in screen  # the function's image and secrets
    assert "no job control" not in screen and "\nNOT-INTERRUPTED\n" not in screen, screen
    # The stock CLI does not pass the shell's exit code on (Modal's own exits 0 here too); it does return.
    assert "COMMAND-EXIT=0" in screen


def test_modal_shell_into_a_running_sandbox_and_container_exec(berth_oci: BerthServer, terminal: Terminal) -> None:
    made = run(
        berth_oci,
        "shell-into",
        """
        v2 = modal.Sandbox.create("sleep", "600", app=app, image=image)
        print(json.dumps({"v2": v2.object_id, "task": v2._get_task_id()}))
        """,
    )
    v1 = run(
        berth_oci,
        "shell-into",
        'sb = modal.Sandbox.create("sleep", "600", app=app, image=image)\nprint(json.dumps({"id": sb.object_id}))',
        env=V1,
    )["id"]
    assert len(v1) == len("sb-") + 22 and len(made["v2"]) != len(v1)  # one of each kind
    for ref in (made["v2"], v1):
        terminal.start(f"modal shell {ref}")
        screen = _drive_shell(terminal)
        assert f"\n{ROWS} {COLS}\n" in screen and f"\nTERM={TERM}\n" in screen, screen
    terminal.start(f"modal container exec {made['task']} -- sh -c 'stty size; echo TERM=$TERM; exit 4'")
    screen = terminal.wait_for("COMMAND-EXIT=")
    assert screen.startswith(f"{ROWS} {COLS}\nTERM={TERM}\nCOMMAND-EXIT=0\n"), screen
    # Without a terminal (the CLI's stdin is not one) there is no PTY: plain output.
    plain = modal(berth_oci, "container", "exec", made["task"], "--", "sh", "-c", "echo plain; tty")
    assert plain.stdout == "plain\nnot a tty\n", plain.output


def _pty_exec_checks(server: BerthServer, app: str, env: dict[str, str] | None = None) -> dict:  # type: ignore[type-arg]
    return run(
        server,
        app,
        """
        from modal_proto import api_pb2
        sb = modal.Sandbox.create("sleep", "300", app=app, image=image)
        pty = api_pb2.PTYInfo(enabled=True, winsz_rows=33, winsz_cols=111, env_term="xterm-berth",
                              pty_type=api_pb2.PTYInfo.PTY_TYPE_SHELL)
        p = sb._exec("sh", "-c", "stty size; echo TERM=$TERM; [ -t 0 ] && echo stdin-is-a-tty; exit 5",
                     pty_info=pty, text=False)
        first = p.stdout.read().decode()
        code = p.wait()
        cat = sb._exec("cat", pty_info=pty, text=False)
        cat.stdin.write(b"typed-line\\n")
        cat.stdin.drain()
        time.sleep(0.5)
        cat.stdin.write(b"\\x04")  # ^D on the terminal: cat's EOF
        cat.stdin.drain()
        echoed = cat.stdout.read().decode()
        missing = sb._exec("no-such-command-here", pty_info=pty, text=False)
        missing_out = missing.stdout.read().decode() + missing.stderr.read().decode()
        print(json.dumps({"first": first, "code": code, "cat": echoed, "cat_code": cat.wait(),
                          "missing": [missing.wait(), missing_out]}))
        sb.terminate()
        """,
        env=env,
    )


def test_pty_exec_window_size_term_stdin_and_exit_code(berth_oci: BerthServer) -> None:
    seen = _pty_exec_checks(berth_oci, "pty-exec")
    assert seen["first"] == "33 111\r\nTERM=xterm-berth\r\nstdin-is-a-tty\r\n"  # \r\n: the terminal's onlcr
    assert seen["code"] == 5
    assert seen["cat"] == "typed-line\r\ntyped-line\r\n"  # the terminal echoes, then cat writes it back
    assert seen["cat_code"] == 0
    assert seen["missing"][0] == 127 and "no-such-command-here" in seen["missing"][1], seen["missing"]


def test_pty_exec_on_the_process_runtime(berth: BerthServer) -> None:
    seen = _pty_exec_checks(berth, "pty-exec-process")
    assert seen["first"] == "33 111\r\nTERM=xterm-berth\r\nstdin-is-a-tty\r\n"
    assert (seen["code"], seen["cat_code"]) == (5, 0)
    assert seen["cat"] == "typed-line\r\ntyped-line\r\n"
    assert seen["missing"][0] == 127 and "no-such-command-here" in seen["missing"][1], seen["missing"]


def test_v1_sandbox_lifecycle_stdio_pty_and_gpu(berth_oci: BerthServer) -> None:
    seen = run(
        berth_oci,
        "v1-sandboxes",
        """
        sb = modal.Sandbox.create("sh", "-c", "while read l; do echo got-$l; echo err-$l >&2; done; exit 7",
                                  app=app, image=image)
        sb.stdin.write(b"a\\n"); sb.stdin.drain()
        sb.stdin.write(b"b\\n"); sb.stdin.write_eof(); sb.stdin.drain()
        out, err = sb.stdout.read(), sb.stderr.read()
        sb.wait(raise_on_termination=False)
        done = {"id": sb.object_id, "out": out, "err": err, "rc": sb.returncode}
        again = modal.Sandbox.from_id(sb.object_id)
        again.poll()
        done["looked_up_rc"] = again.returncode
        long = modal.Sandbox.create("sleep", "300", app=app, image=image)
        p = long.exec("sh", "-c", "echo $TERM", pty=True)
        done["pty"] = p.stdout.read()
        long.terminate()
        long.wait(raise_on_termination=False)
        done["terminated_rc"] = long.returncode
        try:
            long.exec("echo", "late")
            done["late"] = "ran"
        except Exception as exc:
            done["late"] = type(exc).__name__ + ": " + str(exc)
        started = time.monotonic()
        try:
            modal.Sandbox.create("sleep", "10", app=app, image=image, gpu="T4")
            done["gpu"] = "created"
        except Exception as exc:
            done["gpu"] = type(exc).__name__ + ": " + str(exc)
        done["gpu_s"] = time.monotonic() - started
        print(json.dumps(done))
        """,
        env=V1 | {"TERM": TERM},
    )
    assert len(seen["id"]) == len("sb-") + 22  # a V1 id: the client took the V1 RPCs
    assert (seen["out"], seen["err"], seen["rc"], seen["looked_up_rc"]) == ("got-a\ngot-b\n", "err-a\nerr-b\n", 7, 7)
    assert seen["pty"] == f"{TERM}\r\n"  # the client's TERM, through a V1 sandbox's exec
    assert seen["terminated_rc"] == 137
    assert seen["late"].startswith("ConflictError") and "has finished" in seen["late"], seen["late"]
    assert seen["gpu"].startswith("ResourceExhaustedError") and "gpu=T4" in seen["gpu"], seen["gpu"]
    assert "no worker has such a GPU" in seen["gpu"] and seen["gpu_s"] < 30


def test_shell_and_exec_into_unknown_ids_get_modals_errors(berth_oci: BerthServer) -> None:
    for ref, said in (
        ("sb-AAAAAAAAAAAAAAAAAAAAAA", "Sandbox 'sb-AAAAAAAAAAAAAAAAAAAAAA' not found"),
        ("sb-AAAAAAAAAAAAAAAAAAAAAAAA", "Sandbox 'sb-AAAAAAAAAAAAAAAAAAAAAAAA' not found"),
        ("ta-AAAAAAAAAAAAAAAAAAAAAA", "Container 'ta-AAAAAAAAAAAAAAAAAAAAAA' not found"),
    ):
        ran = modal(berth_oci, "shell", ref, timeout=60)
        assert ran.returncode == 1 and said in ran.output, ran.output
    ran = modal(berth_oci, "container", "exec", "ta-AAAAAAAAAAAAAAAAAAAAAA", "echo", "hi", timeout=60)
    assert ran.returncode == 1 and "ta-AAAAAAAAAAAAAAAAAAAAAA is not running" in ran.output, ran.output


def test_modal_shell_with_image_from_a_registry_and_by_image_id(
    berth_oci: BerthServer,
    terminal: Terminal,
    registry: str,  # noqa: F811  (the fixture imported above)
) -> None:
    """`--image` is Image.from_registry (here Debian's registry on loopback: no network needed); an image id
    (`modal shell im-...`) runs that built image."""
    terminal.start(f"modal shell --image {registry}/berth-test/py:1")
    terminal.wait_for("# ", timeout=300)
    terminal.type("cat /berth-marker.txt; echo ENV=$BERTH_IMAGE_ENV; stty size", "Enter")
    screen = terminal.wait_for(f"{ROWS} {COLS}\n")
    assert "\nmarker-v1\nENV=from-registry\n" in screen, screen
    terminal.type("exit", "Enter")
    terminal.wait_for("COMMAND-EXIT=0")
    built = run(berth_oci, "shell-image-id", 'image.build(app)\nprint(json.dumps({"id": image.object_id}))')["id"]
    terminal.start(f"modal shell {built}")
    terminal.wait_for("# ", timeout=300)
    terminal.type("test -f /etc/debian_version && echo DEBIAN-$(id -u)", "Enter")
    terminal.wait_for("\nDEBIAN-0\n")
    terminal.type("exit", "Enter")
    terminal.wait_for("COMMAND-EXIT=0")


def test_shell_and_exec_into_a_terminated_sandbox_fail_clearly(berth_oci: BerthServer) -> None:
    ended = run(
        berth_oci,
        "shell-ended",
        """
        sb = modal.Sandbox.create("sleep", "600", app=app, image=image)
        task = sb._get_task_id()
        sb.terminate()
        sb.wait(raise_on_termination=False)
        print(json.dumps({"id": sb.object_id, "task": task}))
        """,
    )
    shell = modal(berth_oci, "shell", ended["id"], timeout=60)
    execd = modal(berth_oci, "container", "exec", ended["task"], "echo", "hi", timeout=60)
    for ran in (shell, execd):
        assert ran.returncode == 1 and "has finished; it runs no more commands" in ran.output, ran.output
    assert modal(berth_oci, "app", "list").returncode == 0  # the server keeps serving


def test_modal_container_exec_with_a_terminal_on_the_process_runtime(berth: BerthServer, tmp_path: Path) -> None:
    """The process runtime's PTY is a host pty the command takes as its controlling terminal."""
    task = run(
        berth,
        "shell-process",
        'sb = modal.Sandbox.create("sleep", "300", app=app, image=image)\n'
        'print(json.dumps({"task": sb._get_task_id()}))',
    )["task"]
    with _terminal(berth, tmp_path) as term:
        term.start(f"modal container exec {task} -- sh -c 'stty size; echo TERM=$TERM; tty; exit 4'")
        screen = term.wait_for("COMMAND-EXIT=")
    assert screen.startswith(f"{ROWS} {COLS}\nTERM={TERM}\n/dev/pts/"), screen
