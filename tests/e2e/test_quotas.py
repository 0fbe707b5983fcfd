"""Quotas with the stock client: set with `berth quota set` on an environment of their own, so nothing else
on the shared server is limited. Containers over the quota wait (the call finishes later, never dropped);
a sandbox over it and a deploy with more cron jobs than allowed fail with ResourceExhaustedError."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import APPS, BerthServer, modal, python, sdk
from tests.e2e.test_metering import berth_cli


@pytest.fixture
def quota_env(berth: BerthServer) -> Iterator[str]:
    name = f"quota-{secrets.token_hex(3)}"
    run = modal(berth, "environment", "create", name)
    assert run.returncode == 0, run.output
    yield name
    berth_cli(berth, "quota", "set", "--env", name, "containers=none", "sandboxes=none", "crons=none")


def test_a_sandbox_over_its_environments_quota_is_refused_with_resource_exhausted(
    berth: BerthServer, quota_env: str
) -> None:
    berth_cli(berth, "quota", "set", "--env", quota_env, "sandboxes=1")
    out = sdk(
        berth,
        f"""
        import modal
        app = modal.App.lookup("e2e-quota-sandboxes", create_if_missing=True, environment_name={quota_env!r})
        first = modal.Sandbox.create("sleep", "60", app=app)
        try:
            modal.Sandbox.create("sleep", "60", app=app)
            print("SECOND=created")
        except modal.exception.ResourceExhaustedError as exc:
            print("SECOND=refused:" + str(exc))
        first.terminate()
        first.wait(raise_on_termination=False)
        third = modal.Sandbox.create("echo", "ok", app=app)
        third.wait()
        print("THIRD=" + third.stdout.read().strip())
        """,
    )
    assert (
        f"SECOND=refused:Cannot create the sandbox. Quota reached: environment '{quota_env}' allows 1 sandboxes" in out
    )
    assert "THIRD=ok" in out


def test_containers_over_the_quota_wait_for_a_free_one_and_every_call_still_finishes(
    berth: BerthServer, quota_env: str
) -> None:
    berth_cli(berth, "quota", "set", "--env", quota_env, "containers=1")
    code = (
        "import sys, json; sys.path.insert(0, '.')\n"
        "import modal\n"
        "from quota_app import app, hold_a, hold_b\n"
        "with modal.enable_output(), app.run():\n"
        "    a, b = hold_a.spawn(3), hold_b.spawn(3)\n"
        "    print('SPANS=' + json.dumps([a.get(timeout=120), b.get(timeout=120)]))\n"
    )
    run = python(berth, "-c", code, timeout=300, env={"MODAL_ENVIRONMENT": quota_env})
    assert run.returncode == 0, run.output
    (first, second) = sorted(json.loads(run.stdout.split("SPANS=")[1].splitlines()[0]))
    assert second[0] >= first[1] - 0.5  # one container at a time: the second started once the first was gone
    assert "Quota reached" in run.output  # the waiting caller was told why


def test_a_deploy_with_more_cron_jobs_than_allowed_fails_and_the_quota_change_is_audited(
    berth: BerthServer, quota_env: str
) -> None:
    berth_cli(berth, "quota", "set", "--env", quota_env, "crons=1")
    run = modal(berth, "deploy", "-e", quota_env, str(APPS / "quota_app.py"), timeout=180)
    assert run.returncode != 0
    assert "allows 1 scheduled functions (cron jobs)" in run.output, run.output
    listed = berth_cli(berth, "quota", "list")
    assert f"env:{quota_env}\tcrons\t1" in listed
    audit = json.loads(berth_cli(berth, "audit", "--json"))
    assert any(e["action"] == "quota.set" and e["target_id"] == f"env:{quota_env}" for e in audit)
