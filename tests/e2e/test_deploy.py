"""modal deploy, lookups by name from other processes, redeploys, app commands and restarts."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.e2e.conftest import APPS, BerthServer, modal, run_cmd, start_server, stop_server


def _app_copy(tmp: Path, version: str) -> Path:
    target = tmp / "deployable.py"
    text = (APPS / "deployable.py").read_text().replace('VERSION = "v1"', f'VERSION = "{version}"')
    target.write_text(text)
    return target


def _lookup(berth: BerthServer, name: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    run = run_cmd(berth, [sys.executable, str(APPS / "lookup.py"), name], env=env, timeout=120)
    assert run.returncode == 0, run.output
    line = next(x for x in run.stdout.splitlines() if x.startswith("RESULT "))
    return dict(json.loads(line.removeprefix("RESULT ")))


def _deploy(berth: BerthServer, path: Path, *extra: str) -> None:
    run = modal(berth, "deploy", str(path), *extra, timeout=120)
    assert run.returncode == 0, run.output
    assert "App deployed" in run.stdout


def _call(berth: BerthServer, code: str, env: dict[str, str] | None = None) -> str:
    run = run_cmd(berth, [sys.executable, "-c", code], env=env, timeout=120)
    assert run.returncode == 0, run.output
    return run.stdout.strip().splitlines()[-1]


def test_deployed_app_is_callable_by_name_from_other_processes(berth: BerthServer, tmp_path: Path) -> None:
    _deploy(berth, _app_copy(tmp_path, "v1"), "--name", "lookup-app")
    result = _lookup(berth, "lookup-app")
    assert result["function"] == "v1"
    assert result["cls"] == "v1:42"
    assert result["lookup"] is True
    assert "no_such_function" in result["missing_function"]
    assert "no-such-app" in result["missing_app"]


def test_redeploy_serves_new_code_without_failing_calls_in_flight(berth: BerthServer, tmp_path: Path) -> None:
    name = "rolling-app"
    _deploy(berth, _app_copy(tmp_path, "v1"), "--name", name)
    caller = (
        "import time, modal\n"
        f"call = modal.Function.from_name('{name}', 'slow_version').spawn(8, 'rolling-started')\n"
        "flag = modal.Dict.from_name('rolling-started', create_if_missing=True)\n"
        "while not flag.get('started'):\n    time.sleep(0.2)\n"
        "print('STARTED', flush=True)\nprint(call.get(timeout=120))\n"
    )
    inflight = subprocess.Popen(
        [sys.executable, "-c", caller], env=berth.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert inflight.stdout is not None
    assert inflight.stdout.readline().strip() == "STARTED"  # the call now runs in a v1 container
    _deploy(berth, _app_copy(tmp_path, "v2"), "--name", name)
    out, err = inflight.communicate(timeout=120)
    assert inflight.returncode == 0, err
    assert out.strip() == "v1"
    assert _call(berth, f"import modal; print(modal.Function.from_name('{name}', 'version').remote())") == "v2"


def test_app_list_history_rollback_and_stop(berth: BerthServer, tmp_path: Path) -> None:
    name = "history-app"
    _deploy(berth, _app_copy(tmp_path, "v1"), "--name", name)
    _deploy(berth, _app_copy(tmp_path, "v2"), "--name", name)
    listing = modal(berth, "app", "list", "--json")
    assert listing.returncode == 0, listing.output
    apps = {a["description"]: a for a in json.loads(listing.stdout)}
    assert apps[name]["state"] == "deployed"
    history = modal(berth, "app", "history", name, "--json")
    assert history.returncode == 0, history.output
    assert [row["version"] for row in json.loads(history.stdout)] == ["v2", "v1"]
    rollback = modal(berth, "app", "rollback", name, "v1")
    assert rollback.returncode == 0, rollback.output
    history = modal(berth, "app", "history", name, "--json")
    assert [row["version"] for row in json.loads(history.stdout)] == ["v3", "v2", "v1"]
    assert _call(berth, f"import modal; print(modal.Function.from_name('{name}', 'version').remote())") == "v1"
    stop = modal(berth, "app", "stop", name, "--yes")
    assert stop.returncode == 0, stop.output
    code = f"import modal; modal.Function.from_name('{name}', 'version').remote()"
    gone = run_cmd(berth, [sys.executable, "-c", code], timeout=120)
    assert gone.returncode != 0 and "NotFoundError" in gone.output


def test_app_logs_shows_container_output(berth: BerthServer, tmp_path: Path) -> None:
    app_file = tmp_path / "noisy.py"
    app_file.write_text(
        "import modal\napp = modal.App('noisy-app')\n"
        "@app.function()\ndef shout(x: int) -> None:\n    print(f'LOG-LINE-{x}')\n"
    )
    _deploy(berth, app_file)
    _call(berth, "import modal; f = modal.Function.from_name('noisy-app', 'shout'); f.remote(1); print('ok')")
    for _ in range(50):
        logs = modal(berth, "app", "logs", "noisy-app")
        if "LOG-LINE-1" in logs.stdout:
            break
        time.sleep(0.2)
    assert "LOG-LINE-1" in logs.stdout, logs.output
    follow = subprocess.Popen(
        [str(Path(sys.executable).parent / "modal"), "app", "logs", "noisy-app", "-f"],
        env=berth.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        time.sleep(2)
        _call(berth, "import modal; modal.Function.from_name('noisy-app', 'shout').remote(2); print('ok')")
        deadline = time.monotonic() + 30
        seen = ""
        assert follow.stdout is not None
        while "LOG-LINE-2" not in seen and time.monotonic() < deadline:
            seen += follow.stdout.readline()
        assert "LOG-LINE-2" in seen
    finally:
        follow.kill()
        follow.wait()


def test_detached_run_keeps_the_app_running_after_the_client_exits(berth: BerthServer, tmp_path: Path) -> None:
    marker = tmp_path / "detached-done"
    app_file = tmp_path / "detached.py"
    app_file.write_text(
        "import time\nimport modal\napp = modal.App('detached-app')\n"
        "@app.function()\ndef late(path: str) -> None:\n    time.sleep(6)\n    open(path, 'w').write('done')\n"
        "@app.local_entrypoint()\ndef main(path: str) -> None:\n    late.spawn(path)\n"
    )
    run = modal(berth, "run", "--detach", str(app_file), "--path", str(marker), timeout=120)
    assert run.returncode == 0, run.output
    assert not marker.exists()
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert marker.read_text() == "done"


def test_invalid_app_name_is_refused_with_modals_message(berth: BerthServer, tmp_path: Path) -> None:
    run = modal(berth, "deploy", str(_app_copy(tmp_path, "v1")), "--name", "bad name!", timeout=120)
    assert run.returncode != 0
    assert "Invalid App name" in run.output


def test_deployed_function_and_spawned_result_survive_kill_9(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data")
    try:
        _deploy(server, _app_copy(tmp_path, "v1"), "--name", "durable-app")
        code = (
            "import modal\nf = modal.Function.from_name('durable-app', 'slow_version')\n"
            "print(f.spawn(0).object_id)\nprint(f.spawn(6).object_id)"
        )
        run = run_cmd(server, [sys.executable, "-c", code], timeout=120)
        assert run.returncode == 0, run.output
        done_call, pending_call = run.stdout.split()
        time.sleep(2)
        server.proc.kill()  # SIGKILL: no clean shutdown
        server.proc.wait()
        server = start_server(tmp_path / "data")
        get = "import modal, sys; print(modal.FunctionCall.from_id(sys.argv[1]).get(timeout=120))"
        for call_id in (done_call, pending_call):
            res = run_cmd(server, [sys.executable, "-c", get, call_id], timeout=180)
            assert res.returncode == 0, res.output
            assert res.stdout.strip() == "v1"
        assert _call(server, "import modal; print(modal.Function.from_name('durable-app', 'version').remote())") == "v1"
    finally:
        if server.proc.poll() is None:
            stop_server(server)
