"""Environment roles through the stock CLI: Berth tokens are the service users of `modal environment roles`,
and a role is enforced on every request: a viewer lists but cannot deploy, stop or create, no-access sees
nothing, and only a token with full access may change roles."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.e2e.conftest import BIN, BerthServer, modal

ENV = "rbac"


def _berth(server: BerthServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "berth"), *args, "--data-dir", str(server.data_dir)], capture_output=True, text=True, timeout=60
    )


def _roles(berth: BerthServer) -> dict[str, str]:
    listed = modal(berth, "environment", "roles", "list", ENV, "--json", timeout=60)
    assert listed.returncode == 0, listed.output
    return dict(json.loads(listed.stdout)["service_users"])


def _set_role(berth: BerthServer, token_id: str, role: str, env: dict[str, str] | None = None) -> str:
    run = modal(berth, "environment", "roles", "update", ENV, token_id, "--service-user", "--role", role, env=env)
    assert run.returncode == 0 or env is not None, run.output
    return run.output


def test_a_viewer_reads_but_cannot_change_an_environment_and_no_access_sees_nothing(
    berth: BerthServer, tmp_path: Path
) -> None:
    assert modal(berth, "environment", "create", ENV).returncode == 0
    made = _berth(berth, "token", "create")
    assert made.returncode == 0, made.stderr
    pairs = dict(line.split("=", 1) for line in made.stdout.split())
    token_id = pairs["token_id"]
    as_token = {**berth.env, "MODAL_TOKEN_ID": token_id, "MODAL_TOKEN_SECRET": pairs["token_secret"]}
    app = tmp_path / "rbac_app.py"
    app.write_text("import modal\napp = modal.App('e2e-rbac')\n@app.function()\ndef f() -> int:\n    return 1\n")
    try:
        assert _roles(berth)[token_id] == "contributor"  # the default of an unscoped token
        _set_role(berth, token_id, "viewer")
        assert _roles(berth)[token_id] == "viewer"
        assert _roles(berth)[berth.env["MODAL_TOKEN_ID"]] == "contributor"

        assert modal(berth, "app", "list", "--env", ENV, env=as_token).returncode == 0
        assert modal(berth, "dict", "list", "--env", ENV, env=as_token).returncode == 0
        denied = modal(berth, "deploy", "--env", ENV, str(app), env=as_token, timeout=120)
        assert denied.returncode != 0 and "viewer role in environment 'rbac'" in denied.output, denied.output
        created = modal(berth, "dict", "create", "--env", ENV, "rbac-dict", env=as_token)
        assert created.returncode != 0 and "viewer role" in created.output, created.output

        deployed = modal(berth, "deploy", "--env", ENV, str(app), timeout=120)
        assert deployed.returncode == 0, deployed.output
        stop = modal(berth, "app", "stop", "--yes", "--env", ENV, "e2e-rbac", env=as_token)
        assert stop.returncode != 0 and "viewer role" in stop.output, stop.output
        # Elsewhere the token keeps its default role, and it cannot raise its own.
        assert modal(berth, "dict", "create", "rbac-main-dict", env=as_token).returncode == 0
        assert modal(berth, "dict", "delete", "--yes", "rbac-main-dict", env=as_token).returncode == 0
        raised = _set_role(berth, token_id, "contributor", env=as_token)
        assert "full access" in raised, raised

        _set_role(berth, token_id, "no-access")
        hidden = modal(berth, "app", "list", "--env", ENV, env=as_token)
        assert hidden.returncode != 0 and "no access to environment 'rbac'" in hidden.output, hidden.output

        removed = modal(berth, "environment", "members", "remove", ENV, token_id, "--service-user")
        assert removed.returncode == 0, removed.output
        assert _roles(berth)[token_id] == "contributor"
        assert modal(berth, "dict", "create", "--env", ENV, "rbac-dict", env=as_token).returncode == 0
        restricted = modal(berth, "environment", "create", "rbac-restricted", "--restricted")
        assert restricted.returncode != 0 and "not support restricted environments" in restricted.output, (
            restricted.output
        )
    finally:
        modal(berth, "app", "stop", "--yes", "--env", ENV, "e2e-rbac")
        _berth(berth, "token", "revoke", token_id)
        modal(berth, "environment", "delete", "--yes", ENV)
