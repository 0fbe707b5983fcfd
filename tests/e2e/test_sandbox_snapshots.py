"""Sandbox filesystem snapshots, sandbox creates that wait for room, and a stateful code interpreter driven over
exec stdio, through the stock client on crun. One server with a single worker slot serves the module, so every
sandbox and function container here competes for that slot: each test ends what it started."""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import SUITE_RUNTIME, BerthServer, last_json, python, sdk, start_server, stop_server

HEAD = """
import json, time, modal
from modal.exception import *
app = modal.App.lookup({app!r}, create_if_missing=True)
image = modal.Image.debian_slim()
"""

# A function that reads what a snapshotted sandbox left; it stays warm (and holds the one slot) afterwards.
FUNCTION_APP = """
import json, modal
app = modal.App({app!r})

@app.function(image={image}, scaledown_window=600)
def read() -> list:
    import os, snapmod
    return [open("/root/note.txt").read(), snapmod.VALUE, os.path.exists("/etc/debian_version")]

if __name__ == "__main__":
    with app.run():
        print(json.dumps(read.remote()))
"""

WARM_APP = """
import json, os, time, modal
app = modal.App("warm-fn")

@app.function(image=modal.Image.debian_slim(), scaledown_window=600)
def pid() -> int:
    return os.getpid()

if __name__ == "__main__":
    with app.run():
        seen = {"pid": pid.remote()}
        started = time.monotonic()
        sb = modal.Sandbox.create(app=app, image=modal.Image.debian_slim())
        seen["waited"] = time.monotonic() - started
        seen["out"] = sb.exec("echo", "room").stdout.read()
        sb.terminate()
        sb.wait(raise_on_termination=False)
        print(json.dumps(seen))
"""


@pytest.fixture(scope="module")
def one_slot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BerthServer]:
    if os.geteuid() != 0:
        pytest.skip("the crun runtime needs root")
    server = start_server(
        tmp_path_factory.mktemp("berth-snapshots") / "data",
        extra_env={"BERTH_WORKER_SLOTS": "1"},
        extra_args=["--runtime", "crun"],
    )
    yield server
    stop_server(server)


def run(server: BerthServer, app: str, body: str, timeout: float = 240) -> dict:  # type: ignore[type-arg]
    return last_json(sdk(server, HEAD.format(app=app) + textwrap.dedent(body), timeout=timeout))


def run_function(server: BerthServer, tmp_path: Path, app: str, image: str) -> list:  # type: ignore[type-arg]
    path = tmp_path / f"{app}.py"
    path.write_text(FUNCTION_APP.format(app=app, image=image))
    done = python(server, str(path), timeout=240)
    assert done.returncode == 0, done.output
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


def test_snapshot_starts_a_sandbox_and_a_function_with_the_sandboxs_changes(
    one_slot: BerthServer, tmp_path: Path
) -> None:
    seen = run(
        one_slot,
        "snap-fs",
        """
        sb = modal.Sandbox.create(app=app, image=image)
        change = sb.exec("bash", "-c", "set -e; echo hello > /root/note.txt; "
                         "site=$(python3 -c 'import site; print(site.getsitepackages()[0])'); "
                         "mkdir -p $site; echo VALUE = 42 > $site/snapmod.py; "
                         "rm /etc/debian_version; mkdir /opt/owned; chown 1000:1000 /opt/owned")
        assert change.wait() == 0, change.stderr.read()
        snap = sb.snapshot_filesystem()
        sb.reload_volumes()  # volumes are live host directories: nothing to reload, and no error
        sb.terminate()
        sb.wait(raise_on_termination=False)
        again = modal.Sandbox.create(app=app, image=snap)
        check = again.exec("bash", "-c", "cat /root/note.txt; python3 -c 'import snapmod; print(snapmod.VALUE)'; "
                           "stat -c %u /opt/owned; test -e /etc/debian_version && echo present || echo gone")
        check.wait()
        out = check.stdout.read()
        again.terminate()
        again.wait(raise_on_termination=False)
        print(json.dumps({"image": snap.object_id, "out": out}))
        """,
    )
    assert seen["image"].startswith("im-")
    assert seen["out"].split() == ["hello", "42", "1000", "gone"]
    note, value, debian_version = run_function(one_slot, tmp_path, "snap-fn", f"modal.Image.from_id({seen['image']!r})")
    assert (note, value, debian_version) == ("hello\n", 42, False)


def test_sandbox_create_retires_an_idle_function_container_to_start(one_slot: BerthServer, tmp_path: Path) -> None:
    """The one slot is held by the app's own warm function container (scaledown_window=600), idle once its
    call returned: the sandbox create retires it and starts, rather than failing for want of room."""
    path = tmp_path / "warm_fn.py"
    path.write_text(WARM_APP)
    done = python(one_slot, str(path), timeout=240)
    assert done.returncode == 0, done.output
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["out"] == "room\n" and seen["pid"] > 0
    assert seen["waited"] < 120  # not the 300 s a create waits before it gives up


def test_requests_no_worker_could_hold_are_refused_and_unsupported_methods_named(one_slot: BerthServer) -> None:
    seen = run(
        one_slot,
        "snap-refused",
        """
        def error(create):
            try:
                create()
            except Exception as exc:
                return [type(exc).__name__, str(exc)]
            return None

        huge = error(lambda: modal.Sandbox.create(app=app, image=image, memory=64 * 2**20))
        cpus = error(lambda: modal.Sandbox.create(app=app, image=image, cpu=100000))
        exit_snapshot = error(lambda: modal.Sandbox.create(app=app, image=image,
                                                            experimental_options={"enable_exit_snapshot": True}))
        sb = modal.Sandbox.create(app=app, image=image)
        directory = error(lambda: sb.snapshot_directory("/root"))
        mount = error(lambda: sb.mount_image("/mnt/data", image))
        sb.terminate()
        sb.wait(raise_on_termination=False)
        print(json.dumps({"huge": huge, "cpus": cpus, "exit_snapshot": exit_snapshot, "directory": directory,
                          "mount": mount}))
        """,
    )
    assert seen["huge"][0] == "InvalidError" and "67108864 MiB of memory" in seen["huge"][1]
    assert seen["cpus"][0] == "InvalidError" and "100000 CPUs" in seen["cpus"][1]
    assert seen["exit_snapshot"][0] == "InvalidError" and "enable_exit_snapshot" in seen["exit_snapshot"][1]
    assert seen["directory"][0] == "InvalidError" and "Sandbox.snapshot_directory()" in seen["directory"][1]
    assert seen["mount"][0] == "InvalidError" and "Sandbox.mount_image()" in seen["mount"][1]


def test_a_stateful_interpreter_driven_line_by_line_over_exec_stdin_and_stdout(one_slot: BerthServer) -> None:
    """What a code interpreter built on a sandbox does: one long exec reads JSON lines from stdin, keeps its
    globals between them, and answers each with one line on stdout, read with bufsize=1 line iteration."""
    seen = run(
        one_slot,
        "snap-interpreter",
        '''
        driver = """
        import json, sys
        from contextlib import redirect_stderr, redirect_stdout
        from io import StringIO
        scope = {}
        while True:
            code = json.loads(input())["code"]
            out, err = StringIO(), StringIO()
            with redirect_stdout(out), redirect_stderr(err):
                try:
                    exec(code, scope)
                except Exception as e:
                    print(f"Execution Error: {e}", file=sys.stderr)
            print(json.dumps({"stdout": out.getvalue(), "stderr": err.getvalue()}), flush=True)
        """
        import textwrap
        sb = modal.Sandbox.create(app=app, image=image)
        p = sb.exec("python", "-c", textwrap.dedent(driver), bufsize=1)
        lines = iter(p.stdout)
        answers = []
        for code in ["x = 10", "y = 5", "print(f'The result is: {x + y}')", "1 / 0"]:
            p.stdin.write(json.dumps({"code": code}) + "\\n")
            p.stdin.drain()
            answers.append(json.loads(next(lines)))
        sb.terminate()
        sb.wait(raise_on_termination=False)
        print(json.dumps({"answers": answers}))
        ''',
    )["answers"]
    assert seen[2] == {"stdout": "The result is: 15\n", "stderr": ""}
    assert seen[3] == {"stdout": "", "stderr": "Execution Error: division by zero\n"}


def test_snapshot_on_the_process_runtime_is_refused_by_name(berth: BerthServer) -> None:
    if SUITE_RUNTIME != "process":
        pytest.skip("the suite's server runs isolated containers")
    seen = run(
        berth,
        "snap-process",
        """
        sb = modal.Sandbox.create("sleep", "60", app=app)
        try:
            sb.snapshot_filesystem()
            refused = None
        except Exception as exc:
            refused = [type(exc).__name__, str(exc)]
        sb.terminate()
        print(json.dumps({"refused": refused}))
        """,
    )
    assert seen["refused"][0] == "InvalidError" and "Sandbox.snapshot_filesystem()" in seen["refused"][1]
    assert "needs an OCI runtime" in seen["refused"][1]
