"""`modal app rollover` (rolling and recreate) replaces an app's containers with new ones running the same
version; `modal app promote` and `modal deploy --staged` are refused by name, and a refused staged deploy
leaves the live version serving."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.e2e.conftest import APPS, BerthServer, modal, run_cmd

APP = "e2e-rollover"


def _whoami(berth: BerthServer) -> tuple[str, str]:
    code = f"import modal\nprint(modal.Function.from_name('{APP}', 'whoami').remote())\n"
    run = run_cmd(berth, [sys.executable, "-c", code], timeout=120)
    assert run.returncode == 0, run.output
    version, task_id = run.stdout.strip().splitlines()[-1].split()
    return version, task_id


def _app_containers(berth: BerthServer) -> set[str]:
    listed = modal(berth, "container", "list", "--json", timeout=60)
    assert listed.returncode == 0, listed.output
    return {c["container_id"] for c in json.loads(listed.stdout) if c["app_name"] == APP}


def test_rollover_replaces_containers_and_promote_and_staged_deploys_are_refused(
    berth: BerthServer, tmp_path: Path
) -> None:
    deployed = modal(berth, "deploy", str(APPS / "rollover_app.py"), timeout=120)
    assert deployed.returncode == 0, deployed.output
    try:
        version, first = _whoami(berth)
        assert (version, _whoami(berth)[1]) == ("v1", first)  # a warm container answers again

        rolled = modal(berth, "app", "rollover", APP, timeout=120)
        assert rolled.returncode == 0 and "Rollover completed" in rolled.output, rolled.output
        version, second = _whoami(berth)
        assert version == "v1" and second != first
        history = modal(berth, "app", "history", APP, "--json", timeout=60)
        assert history.returncode == 0, history.output
        assert [row["version"] for row in json.loads(history.stdout)] == ["v2", "v1"]

        recreated = modal(berth, "app", "rollover", APP, "--strategy", "recreate", timeout=120)
        assert recreated.returncode == 0 and "recreate strategy" in recreated.output, recreated.output
        assert second not in _app_containers(berth)  # stopped before the command returned
        assert _whoami(berth)[1] not in (first, second)

        promoted = modal(berth, "app", "promote", APP, "v1", timeout=60)
        assert promoted.returncode != 0 and "staged deployments" in promoted.output, promoted.output

        staged_app = tmp_path / "rollover_app.py"
        staged_app.write_text((APPS / "rollover_app.py").read_text().replace('VERSION = "v1"', 'VERSION = "v2"'))
        staged = modal(berth, "deploy", "--staged", str(staged_app), timeout=120)
        assert staged.returncode != 0 and "staged deployments" in staged.output, staged.output
        modal(berth, "app", "rollover", APP, "--strategy", "recreate", timeout=120)
        assert _whoami(berth)[0] == "v1"  # new containers still run the live version's code
    finally:
        stopped = modal(berth, "app", "stop", "--yes", APP, timeout=60)
        assert stopped.returncode == 0, stopped.output
