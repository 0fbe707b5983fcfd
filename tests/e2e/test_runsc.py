"""`berth up --runtime runsc`: functions run under gVisor (ptrace platform, runsc started inside the
container's own network namespace), see their image, reach the Berth API, and keep the hardening and
limits of the crun containers; sandboxes run there too, with exec, stdin, the filesystem API,
terminate, timeouts and a server shutdown that ends them. scripts/setup-host.sh installs runsc, so CI
runs these."""

from __future__ import annotations

import errno
import json
import os
import shutil
import sqlite3
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import BerthServer, modal, sdk, start_server, stop_server
from tests.e2e.test_hardening import CAP_NET_RAW, CAP_SYS_ADMIN, call
from tests.e2e.test_isolation import _task_traces
from tests.e2e.test_shell import COLS, ROWS, TERM, _drive_shell, _pty_exec_checks, _terminal

RUNSC_ROOT = "/run/berth/runsc"
SANDBOX_HEAD = """
import json, time, modal
from modal.exception import *
app = modal.App.lookup({app!r}, create_if_missing=True)
image = modal.Image.debian_slim()
"""


def _needs_runsc() -> None:
    if os.geteuid() != 0:
        pytest.skip("the runsc runtime needs root")
    if shutil.which("runsc") is None:
        pytest.skip("runsc (gVisor) is not installed: run scripts/setup-host.sh (apt package runsc)")


def _sandbox_json(server: BerthServer, app: str, body: str) -> dict:  # type: ignore[type-arg]
    out = sdk(server, SANDBOX_HEAD.format(app=app) + textwrap.dedent(body), timeout=300)
    return dict(json.loads(out.strip().splitlines()[-1]))


def _runsc_containers() -> list[str]:
    listed = subprocess.run(["runsc", "--root", RUNSC_ROOT, "list", "-quiet"], capture_output=True, text=True)
    return listed.stdout.split()


@pytest.fixture(scope="module")
def berth_runsc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BerthServer]:
    _needs_runsc()
    server = start_server(tmp_path_factory.mktemp("berth-runsc") / "data", extra_args=["--runtime", "runsc"])
    yield server
    stop_server(server)


def test_function_runs_under_gvisor_and_sees_its_image(berth_runsc: BerthServer) -> None:
    seen = call(berth_runsc, "kernel")  # it returns at all: the container reached the Berth API
    # gVisor's kernel reports a fixed Linux 4.4.0 of its own, never the host's (syslog, hence dmesg, is
    # denied by the seccomp profile).
    assert seen["release"] == "4.4.0" != os.uname().release
    assert "#1 SMP Sun Jan 10 15:06:54 PST 2016" in str(seen["version"])
    assert "bookworm" in str(seen["os_release"]) and seen["debian_version"] is True  # the image's files
    assert str(seen["python"]).startswith("3.11")
    assert str(seen["server_url"]).startswith("http://172.21.0.1:")  # over its own network namespace
    assert int(str(seen["pid"])) < 100


def test_hardening_holds_under_gvisor(berth_runsc: BerthServer, tmp_path: Path) -> None:
    marker = tmp_path / "host-only-marker"
    marker.write_text("the host's")
    seen = call(berth_runsc, "probe", [str(marker)])
    assert seen["seccomp"] == "2"  # the same profile, applied by gVisor's kernel (--oci-seccomp)
    caps = int(str(seen["cap_eff"]))
    assert not caps & (1 << CAP_SYS_ADMIN) and not caps & (1 << CAP_NET_RAW)
    assert seen["unshare_user_ns"] == errno.EPERM
    assert seen["mount"] == errno.EPERM
    assert seen["init_module"] == errno.EPERM
    assert "/__berth/loop.py" in str(seen["init_cmdline"])  # Berth's container loop (worker/berth_loop.py)
    assert seen["host_paths"] == {str(marker): False}


def test_memory_limit_and_cleanup_under_gvisor(berth_runsc: BerthServer) -> None:
    big = modal(berth_runsc, "run", "isolation.py", "--mb", "512", timeout=600)
    assert big.returncode != 0
    assert "exceeded its memory limit of 128 MiB" in big.output
    small = modal(berth_runsc, "run", "isolation.py", "--mb", "8", timeout=600)
    assert small.returncode == 0, small.output
    assert "hog=8" in small.stdout
    # Once the app has stopped, its sandboxes, mounts and namespaces are gone.
    with sqlite3.connect(berth_runsc.data_dir / "berth.db") as db:
        tasks = {row[0] for row in db.execute("SELECT task_id FROM tasks WHERE state = 'stopped'")}
    assert tasks
    listed = subprocess.run(["runsc", "--root", RUNSC_ROOT, "list", "-quiet"], capture_output=True, text=True).stdout
    assert not [cid for cid in listed.split() if cid.removeprefix("berth-") in tasks]
    assert _task_traces(berth_runsc.data_dir, tasks) == []


def test_sandbox_exec_stdin_and_files_under_gvisor(berth_runsc: BerthServer) -> None:
    # runsc's later commands (state, exec, kill) must reach the sandbox's control socket, which lives in
    # the container's network namespace: from anywhere else runsc calls the container "stopped".
    seen = _sandbox_json(
        berth_runsc,
        "sb-runsc-exec",
        """
        sb = modal.Sandbox.create(app=app, image=image)
        p = sb.exec("bash", "-c", "echo out; echo err >&2; uname -r; exit 5")
        out, err, rc = p.stdout.read(), p.stderr.read(), p.wait()
        cat = sb.exec("cat")
        cat.stdin.write(b"to the exec\\n")
        cat.stdin.write_eof()
        cat.stdin.drain()
        fs = sb.filesystem
        fs.write_text("written\\n", "/tmp/a/b.txt")
        data = bytes(range(256)) * 1000
        fs.write_bytes(data, "/tmp/bin")
        missing = sb.exec("no-such-command")
        coreutils = sb.exec("sh", "-c", "ls -l /usr/bin/python3 && stat -c %F /etc && cat /etc/ld.so.preload")
        t0 = time.monotonic()
        slow = sb.exec("sleep", "300", timeout=2)
        slow_rc = slow.wait()
        took = time.monotonic() - t0
        time.sleep(1)
        count = sb.exec("sh", "-c", "for p in /proc/[0-9]*; do tr '\\\\0' ' ' < $p/cmdline; echo; done"
                        " | grep -c '^sleep 300' || true")
        print(json.dumps({"out": out, "err": err, "rc": rc, "cat": cat.stdout.read(), "cat_rc": cat.wait(),
                          "text": fs.read_text("/tmp/a/b.txt"), "same": fs.read_bytes("/tmp/bin") == data,
                          "via_exec": sb.exec("cat", "/tmp/a/b.txt").stdout.read(),
                          "missing": missing.wait(), "slow_rc": slow_rc, "took": took,
                          "left": count.stdout.read().strip(),
                          "coreutils": [coreutils.stdout.read(), coreutils.stderr.read(), coreutils.wait()]}))
        sb.terminate()
        """,
    )
    assert seen["out"] == "out\n4.4.0\n" and seen["err"] == "err\n" and seen["rc"] == 5  # gVisor's kernel
    assert seen["cat"] == "to the exec\n" and seen["cat_rc"] == 0
    assert seen["text"] == "written\n" == seen["via_exec"] and seen["same"] is True
    assert seen["missing"] == 127
    assert seen["slow_rc"] in (-1, 124) and seen["took"] < 10
    assert seen["left"] == "0"  # killed inside gVisor (by its pid there), not just the `runsc exec` on the host
    # coreutils 9's statx(AT_NO_AUTOMOUNT), which this runsc refuses, through the shim (berth.worker.gvisor_statx)
    out, err, code = seen["coreutils"]
    assert code == 0 and "/usr/bin/python3 -> python3.11\n" in out and "\ndirectory\n" in out, seen["coreutils"]
    assert out.endswith("\n/__berth/gvisor-statx.so\n"), out


def test_pty_exec_under_gvisor(berth_runsc: BerthServer) -> None:
    """`runsc exec` with the worker's pty slave as its stdio and process.terminal set: gVisor makes that host
    terminal the command's controlling terminal (size, TERM, echo, ^D, the exit code)."""
    seen = _pty_exec_checks(berth_runsc, "pty-exec-runsc")
    assert seen["first"] == "33 111\r\nTERM=xterm-berth\r\nstdin-is-a-tty\r\n"
    assert (seen["code"], seen["cat_code"]) == (5, 0)
    assert seen["cat"] == "typed-line\r\ntyped-line\r\n"
    assert seen["missing"][0] == 127 and "no-such-command-here" in seen["missing"][1], seen["missing"]


def test_sandbox_terminate_wait_and_timeout_under_gvisor(berth_runsc: BerthServer) -> None:
    seen = _sandbox_json(
        berth_runsc,
        "sb-runsc-ends",
        """
        sb = modal.Sandbox.create(app=app, image=image)
        running = sb.poll()
        sb.terminate()
        sb.wait(raise_on_termination=False)
        done = modal.Sandbox.create("bash", "-c", "echo bye; exit 3", app=app, image=image)
        done.wait()
        t0 = time.monotonic()
        short = modal.Sandbox.create("sleep", "600", app=app, image=image, timeout=2)
        try:
            short.wait()
            raised = None
        except SandboxTimeoutError as exc:
            raised = type(exc).__name__
        print(json.dumps({"running": running, "terminated": sb.returncode, "rc": done.returncode,
                          "out": done.stdout.read(), "timeout_rc": short.returncode, "raised": raised,
                          "took": time.monotonic() - t0}))
        """,
    )
    assert seen["running"] is None and seen["terminated"] == 137
    assert seen["rc"] == 3 and seen["out"] == "bye\n"
    assert seen["timeout_rc"] == 124 and seen["raised"] == "SandboxTimeoutError" and seen["took"] < 30


def test_server_shutdown_ends_a_live_gvisor_sandbox(tmp_path: Path) -> None:
    _needs_runsc()
    server = start_server(tmp_path / "data", extra_args=["--runtime", "runsc"])
    try:
        seen = _sandbox_json(
            server,
            "sb-runsc-live",
            """
            sb = modal.Sandbox.create("sleep", "infinity", app=app, image=image)
            print(json.dumps({"id": sb.object_id, "hi": sb.exec("echo", "hi").stdout.read()}))
            """,
        )
        assert seen["hi"] == "hi\n"
        live = [cid for cid in _runsc_containers() if cid.startswith("berth-ta-")]
        assert live
    finally:
        code = stop_server(server)  # it used to hang here: runsc's kill never reached the sandbox
    assert code == 0
    assert not set(live) & set(_runsc_containers())
    assert not [
        line
        for line in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout.splitlines()
        if any(cid in line for cid in live)
    ]


def test_blocked_network_sandbox_under_gvisor(berth_runsc: BerthServer) -> None:
    # runsc uses the network of the namespace it is started in: a blocked sandbox gets one with only lo.
    seen = _sandbox_json(
        berth_runsc,
        "sb-runsc-blocked",
        """
        probe = "\\n".join([
            "import socket",
            "try:",
            "    socket.create_connection(('1.1.1.1', 53), timeout=3)",
            "    print('reached')",
            "except OSError as exc:",
            "    print('OSError', exc.errno)",
        ])
        blocked = modal.Sandbox.create(app=app, image=image, block_network=True)
        opened = modal.Sandbox.create(app=app, image=image)
        seen = {}
        for name, sb in (("blocked", blocked), ("open", opened)):
            seen[name] = {"connect": sb.exec("python3", "-c", probe).stdout.read().strip(),
                          "links": sb.exec("cat", "/proc/net/dev").stdout.read()}
            sb.terminate()
        print(json.dumps(seen))
        """,
    )
    assert seen["blocked"]["connect"].startswith("OSError"), seen
    assert " lo:" in seen["blocked"]["links"] and "eth0" not in seen["blocked"]["links"], seen
    assert "eth0" in seen["open"]["links"], seen


def test_modal_shell_and_container_exec_with_a_terminal_under_gvisor(berth_runsc: BerthServer, tmp_path: Path) -> None:
    """`modal shell` into a gVisor sandbox in a real terminal (tmux): size, TERM, job control (^C ends the
    foreground job, not the shell), `exit`; and `modal container exec` with a terminal, its exit code."""
    made = _sandbox_json(
        berth_runsc,
        "shell-runsc",
        """
        sb = modal.Sandbox.create("sleep", "600", app=app, image=image)
        print(json.dumps({"id": sb.object_id, "task": sb._get_task_id()}))
        """,
    )
    with _terminal(berth_runsc, tmp_path) as term:
        term.start(f"modal shell {made['id']}")
        screen = _drive_shell(term)
        assert f"\n{ROWS} {COLS}\n" in screen and f"\nTERM={TERM}\n" in screen, screen
        assert "no job control" not in screen and "\nNOT-INTERRUPTED\n" not in screen, screen
        term.start(f"modal container exec {made['task']} -- sh -c 'stty size; echo TERM=$TERM; uname -r; exit 4'")
        screen = term.wait_for("COMMAND-EXIT=")
        assert screen.startswith(f"{ROWS} {COLS}\nTERM={TERM}\n4.4.0\nCOMMAND-EXIT=0\n"), screen  # gVisor's kernel
        # raw mode set inside gVisor reaches the terminal: one key, no Enter, is read at once and not echoed
        raw = "stty raw -echo; echo READY; k=$(dd bs=1 count=1 2>/dev/null); stty sane; echo; echo got=$k"
        term.start(f"modal container exec {made['task']} -- sh -c '{raw}'")
        term.wait_for("READY")
        term.type("x")
        screen = term.wait_for("COMMAND-EXIT=")
        assert screen.startswith("READY\n\ngot=x\nCOMMAND-EXIT=0\n"), screen  # (an echoed x would stand alone)
    sdk(berth_runsc, SANDBOX_HEAD.format(app="shell-runsc") + f"modal.Sandbox.from_id({made['id']!r}).terminate()")


def test_a_pooled_gvisor_sandbox_behaves_as_a_fresh_one(berth_runsc: BerthServer) -> None:
    """Once the image has had a sandbox, the next start in runsc containers made ahead (hostname `pool-...`,
    the pooled container's own: see OciRuntime._hand_over_gvisor), with their own command, environment,
    secrets, working directory, stdin, exit code, execs and terminate, and never another sandbox's container."""
    seen = _sandbox_json(
        berth_runsc,
        "sb-runsc-pool",
        f"""
        from pathlib import Path
        LOG = Path({str(berth_runsc.log_path)!r})

        def filled(before):
            deadline = time.monotonic() + 60
            while LOG.read_text(errors="replace").count("is ready (image") <= before and time.monotonic() < deadline:
                time.sleep(0.05)

        before = LOG.read_text(errors="replace").count("is ready (image")
        first = modal.Sandbox.create("sleep", "300", app=app, image=image)
        filled(before)
        before = LOG.read_text(errors="replace").count("is ready (image")
        sb = modal.Sandbox.create(
            "sh", "-c", "read line; echo \\"$FOO $POOL_SECRET $line $(pwd) $(hostname)\\"; echo err >&2; exit 7",
            app=app, image=image, workdir="/tmp", secrets=[modal.Secret.from_dict({{"POOL_SECRET": "s3"}})],
            env={{"FOO": "bar"}},
        )
        sb.stdin.write(b"from-stdin\\n")
        sb.stdin.write_eof()
        sb.stdin.drain()
        sb.wait(raise_on_termination=False)
        filled(before)
        other = modal.Sandbox.create("sleep", "300", app=app, image=image)
        shown = "echo \\"$FOO$POOL_SECRET\\" $(hostname) $(pwd) $(grep 127.0.1.1 /etc/hosts); exit 5"
        p = other.exec("sh", "-c", shown)
        listing = p.stdout.read()
        exec_rc = p.wait()
        other.terminate()
        other.wait(raise_on_termination=False)
        print(json.dumps({{"out": sb.stdout.read(), "err": sb.stderr.read(), "rc": sb.returncode,
                          "exec": listing, "exec_rc": exec_rc, "terminated": other.returncode}}))
        first.terminate()
        """,
    )
    foo, secret, line, cwd, hostname = seen["out"].split()
    assert [foo, secret, line, cwd] == ["bar", "s3", "from-stdin", "/tmp"] and seen["rc"] == 7
    assert seen["err"] == "err\n" and hostname.startswith("pool-")  # taken from the pool
    # nothing of the first's environment or secrets; /etc/hosts names the task and the pooled container
    other_host, other_cwd, address, task_name, pool_name = seen["exec"].split()
    assert other_host.startswith("pool-") and other_host != hostname and other_cwd == "/root"
    assert address == "127.0.1.1" and task_name.startswith("ta-") and pool_name == other_host
    assert seen["exec_rc"] == 5 and seen["terminated"] == 137
