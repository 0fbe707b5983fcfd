"""`modal app rollover` (rolling and recreate) replaces an app's containers with new ones running the same
version; `modal deploy --staged` records a version that does not serve until `modal app promote` deploys it."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

from modal_proto import api_pb2

from tests.e2e.conftest import APPS, BerthServer, last_json, modal, run_cmd, sdk

APP = "e2e-rollover"
STANDARD, ROLLOVER = api_pb2.DEPLOYMENT_TYPE_STANDARD, api_pb2.DEPLOYMENT_TYPE_ROLLOVER
PROMOTION, STAGED = api_pb2.DEPLOYMENT_TYPE_PROMOTION, api_pb2.DEPLOYMENT_TYPE_STAGED


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


def _history(berth: BerthServer) -> list[list[int]]:
    """[version, deployment_type, rollback_version] of each row of the app's history, in the server's order."""
    out = sdk(
        berth,
        f"""
        import asyncio, json
        from modal.client import _Client
        from modal_proto import api_pb2

        async def main():
            client = await _Client.from_env()
            app = await client._stub.AppGetByDeploymentName(api_pb2.AppGetByDeploymentNameRequest(name="{APP}"))
            req = api_pb2.AppDeploymentHistoryRequest(app_id=app.app_id)
            rows = (await client._stub.AppDeploymentHistory(req)).app_deployment_histories
            print(json.dumps({{"rows": [[r.version, r.deployment_type, r.rollback_version] for r in rows]}}))

        asyncio.run(main())
        """,
    )
    return list(last_json(out)["rows"])


def _scheduled(berth: BerthServer) -> int:
    """How many of the app's functions have a schedule registered (a staged version's must not be)."""
    with sqlite3.connect(berth.data_dir / "berth.db") as db:
        query = "SELECT count(*) FROM schedules s JOIN apps a ON a.app_id = s.app_id WHERE a.name = ? AND a.state = ?"
        return int(db.execute(query, (APP, api_pb2.APP_STATE_DEPLOYED)).fetchone()[0])


def test_rollover_replaces_containers(berth: BerthServer) -> None:
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
    finally:
        stopped = modal(berth, "app", "stop", "--yes", APP, timeout=60)
        assert stopped.returncode == 0, stopped.output


def test_a_staged_deploy_serves_nothing_until_promoted(berth: BerthServer, tmp_path: Path) -> None:
    source = (APPS / "rollover_app.py").read_text()
    never = tmp_path / "never_deployed.py"
    never.write_text(source.replace(f'"{APP}"', '"e2e-staged-first"'))
    first = modal(berth, "deploy", "--staged", str(never), timeout=120)
    assert first.returncode != 0 and "deploy it first" in first.output, first.output

    deployed = modal(berth, "deploy", str(APPS / "rollover_app.py"), timeout=120)
    assert deployed.returncode == 0, deployed.output
    try:
        assert _whoami(berth)[0] == "v1"
        staged_app = tmp_path / "rollover_app.py"
        # v2 also runs every hour: a schedule that must start only once v2 is promoted.
        v2 = source.replace('VERSION = "v1"', 'VERSION = "v2"')
        staged_app.write_text(
            v2.replace("(scaledown_window=120)", "(scaledown_window=120, schedule=modal.Period(hours=1))")
        )
        staged = modal(berth, "deploy", "--staged", str(staged_app), timeout=120)
        assert staged.returncode == 0 and f"modal app promote {APP} v2" in staged.output, staged.output
        assert _whoami(berth)[0] == "v1" and _scheduled(berth) == 0
        # A rollover redeploys the live version, not the newer staged one: new containers, same code.
        rolled = modal(berth, "app", "rollover", APP, "--strategy", "recreate", timeout=120)
        assert rolled.returncode == 0, rolled.output
        assert _whoami(berth)[0] == "v1"
        assert _history(berth) == [[3, ROLLOVER, 1], [2, STAGED, 0], [1, STANDARD, 0]]  # the live one first

        refused = modal(berth, "app", "promote", APP, "v3", timeout=60)
        assert refused.returncode != 0 and "v3" in refused.output, refused.output
        assert "not a staged version" in refused.output, refused.output
        missing = modal(berth, "app", "promote", APP, "v9", timeout=60)
        assert missing.returncode != 0 and "no deployment version v9" in missing.output, missing.output
        rollback = modal(berth, "app", "rollback", APP, "v2", timeout=60)
        assert rollback.returncode != 0 and "has never been live" in rollback.output, rollback.output

        promoted = modal(berth, "app", "promote", APP, "v2", timeout=120)
        assert promoted.returncode == 0 and "Promoted App to v2" in promoted.output, promoted.output
        assert _whoami(berth)[0] == "v2" and _scheduled(berth) == 1
        assert _history(berth)[0] == [4, PROMOTION, 2]
        history = modal(berth, "app", "history", APP, "--json", timeout=60)
        assert history.returncode == 0, history.output
        assert [row["version"] for row in json.loads(history.stdout)] == ["v4", "v3", "v2", "v1"]
    finally:
        stopped = modal(berth, "app", "stop", "--yes", APP, timeout=60)
        assert stopped.returncode == 0, stopped.output
