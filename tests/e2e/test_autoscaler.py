"""Autoscaler control through the stock client: `Function.update_autoscaler` and `modal function autoscaler
update|settings` take effect at once (min_containers starts containers with no call, buffer_containers keeps
idle ones beyond demand), read back, and min_containers (decorator or override) outlives a server restart."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from tests.e2e.conftest import APPS, BerthServer, modal, run_cmd, start_server, stop_server, wait_for

APP = "e2e-warm-pool"


def _containers(server: BerthServer) -> list[dict[str, str]]:
    listed = modal(server, "container", "list", "--json", timeout=60)
    assert listed.returncode == 0, listed.output
    return [c for c in json.loads(listed.stdout) if c["app_name"] == APP]


def _function_containers(server: BerthServer, function: str) -> int:
    """Live containers of one function, from `modal app info`-style stats the SDK reads."""
    code = (
        "import modal\n"
        f"f = modal.Function.from_name('{APP}', '{function}')\n"
        "print(f.get_current_stats().num_total_runners)\n"
    )
    run = run_cmd(server, [sys.executable, "-c", code], timeout=60)
    assert run.returncode == 0, run.output
    return int(run.stdout.strip().splitlines()[-1])


def _settings(server: BerthServer, function: str) -> dict[str, object]:
    shown = modal(server, "function", "autoscaler", "settings", f"{APP}/{function}", "--json", timeout=60)
    assert shown.returncode == 0, shown.output
    return dict(json.loads(shown.stdout))


def test_autoscaler_updates_take_effect_read_back_and_min_containers_survives_a_restart(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data")
    try:
        deploy = modal(server, "deploy", str(APPS / "warm_pool.py"), timeout=120)
        assert deploy.returncode == 0, deploy.output
        # The decorator's min_containers=1 starts a container of `pinned` with no call.
        wait_for(lambda: _function_containers(server, "pinned") == 1, "the decorator's min_containers", 60)
        assert _function_containers(server, "hold") == 0

        code = (
            "import modal\n"
            f"f = modal.Function.from_name('{APP}', 'hold')\n"
            "s = f.update_autoscaler(min_containers=2)\n"
            "print(s.min_containers, s.max_containers)\n"
        )
        run = run_cmd(server, [sys.executable, "-c", code], timeout=60)
        assert run.returncode == 0, run.output
        assert run.stdout.split()[0] == "2"
        wait_for(lambda: _function_containers(server, "hold") == 2, "two containers from min_containers=2", 60)
        time.sleep(4)  # past the scaledown window: the warm ones stay
        assert _function_containers(server, "hold") == 2
        shown = _settings(server, "hold")
        assert shown["current_settings"]["min_containers"] == 2  # type: ignore[index]
        assert [e["setting"] for e in shown["override_events"]] == ["min_containers"]  # type: ignore[union-attr]

        # The CLI: back to none kept warm, then a buffer of one idle container beyond a running call.
        updated = modal(
            server, "function", "autoscaler", "update", f"{APP}/hold", "--min-containers", "0",
            "--buffer-containers", "1", timeout=60,
        )  # fmt: skip
        assert updated.returncode == 0 and "Updated autoscaler settings" in updated.output, updated.output
        wait_for(lambda: _function_containers(server, "hold") == 1, "min_containers=0 retiring one of two", 60)
        caller = subprocess.Popen(
            [sys.executable, "-c", f"import modal; print(modal.Function.from_name('{APP}', 'hold').remote(15))"],
            env=server.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            wait_for(lambda: _function_containers(server, "hold") == 2, "one busy container and one buffer", 60)
            assert len(_containers(server)) == 3  # with `pinned`'s warm one
        finally:
            out, _ = caller.communicate(timeout=120)
        assert caller.returncode == 0 and "held" in out, out
        assert _settings(server, "hold")["current_settings"]["buffer_containers"] == 1  # type: ignore[index]

        again = modal(server, "function", "autoscaler", "update", f"{APP}/hold", "--min-containers", "2", timeout=60)
        assert again.returncode == 0, again.output
        assert stop_server(server) == 0
        server = start_server(tmp_path / "data")
        # Nothing calls either function: the restarted server starts what both min_containers ask for.
        wait_for(lambda: _function_containers(server, "hold") >= 2, "min_containers=2 after a restart", 90)
        wait_for(lambda: _function_containers(server, "pinned") == 1, "the decorator's min_containers", 60)
        assert _settings(server, "hold")["current_settings"]["min_containers"] == 2  # type: ignore[index]
        stopped = modal(server, "app", "stop", "--yes", APP, timeout=60)
        assert stopped.returncode == 0, stopped.output
    finally:
        if server.proc.poll() is None:
            stop_server(server)
