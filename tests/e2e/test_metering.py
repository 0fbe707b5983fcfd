"""Metering, billing and the audit log with the stock CLI against a real server: a function burns a known
amount of CPU through `modal run`, and `modal billing report` / `summary` give it back, attributed to its
app, function and tags, priced by the rates `berth rates set` put in force. Administrative actions land in
the audit log under the token that made them, without any secret's value."""

from __future__ import annotations

import json
import secrets
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import APPS, BIN, BerthServer, modal, sdk, wait_for

BURN_S = 2.0
# The container's CPU is the burn plus the entrypoint's own work (imports, heartbeats); on the process
# runtime the counters of a container that exits on its own lose at most its last second.
CPU_LOW, CPU_HIGH = BURN_S * 0.75, BURN_S + 3.0


def berth_cli(berth: BerthServer, *args: str) -> str:
    run = subprocess.run(
        [BIN / "berth", *args, "--data-dir", str(berth.data_dir)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


def _json(berth: BerthServer, *args: str) -> Any:
    run = modal(berth, *args, "--json", timeout=120)
    assert run.returncode == 0, run.output
    return json.loads(run.stdout)


def _cpu_rows(berth: BerthServer) -> list[dict[str, Any]]:
    rows = _json(berth, "billing", "report", "--for", "today", "--show-resources", "-t", "team,project")
    return [r for r in rows if r["description"] == "e2e-metered.burn" and r["resource"] == "CPU"]


@pytest.fixture(scope="module")
def burned(berth: BerthServer) -> list[dict[str, Any]]:
    # One dollar per CPU-second and nothing for memory: the CPU cost is the CPU-seconds.
    berth_cli(berth, "rates", "set", "cpu=1", "memory=0")
    run = modal(berth, "run", str(APPS / "metered.py") + "::burn", "--seconds", str(BURN_S), timeout=300)
    assert run.returncode == 0, run.output
    wait_for(lambda: sum(float(r["cost"]) for r in _cpu_rows(berth)) >= CPU_LOW, "the burn's CPU in the report", 30)
    return _cpu_rows(berth)


def test_a_cpu_burn_run_through_modal_run_is_billed_as_that_much_cpu_to_its_function_and_tags(
    burned: list[dict[str, Any]],
) -> None:
    cpu = sum(float(r["cost"]) for r in burned)
    assert CPU_LOW <= cpu <= CPU_HIGH, burned
    assert {r["environment"] for r in burned} == {"main"}
    assert {r["object_id"][:3] for r in burned} == {"fu-"}
    assert json.loads(burned[0]["tags"]) == {"team": "metering-e2e", "project": "berth"}


def test_usage_rolls_up_per_tag_and_app_and_the_summary_prices_it(berth: BerthServer, burned: Any) -> None:
    by_team = {g["key"]: g for g in json.loads(berth_cli(berth, "usage", "--by", "tag:team", "--json"))}
    assert CPU_LOW <= by_team["metering-e2e"]["cpu_s"] <= CPU_HIGH
    assert by_team["metering-e2e"]["memory_gib_s"] > 0  # the entrypoint holds some memory while it runs
    summary = _json(berth, "billing", "summary")
    assert float(summary["metered_cost_breakdown"]["cpu"]) >= CPU_LOW
    assert summary["billed_cost"] == summary["metered_cost"]
    out = sdk(
        berth,
        """
        import json
        from datetime import datetime, timezone
        import modal

        env = modal.Environment.from_name("main")
        today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
        rows = [r for r in env.billing.report(start=today) if r.description == "e2e-metered.burn"]
        summary = env.billing.summary()
        print(json.dumps({"report": sum(float(r.cost_by_resource["CPU"]) for r in rows),
                          "summary": float(summary.metered_cost_breakdown["CPU"])}))
        """,
    )
    by_env = json.loads(out.strip().splitlines()[-1])
    assert CPU_LOW <= by_env["report"] <= CPU_HIGH and by_env["summary"] >= by_env["report"]


def test_rates_the_operator_sets_are_what_modal_billing_rates_shows(berth: BerthServer) -> None:
    berth_cli(berth, "rates", "set", "gpu:A100=0.5")
    rates = _json(berth, "billing", "rates")
    assert rates["gpu:A100"] == "0.5" and rates["cpu"] == "1"
    assert float(rates["gpu:H100"]) > 0  # a default Berth documents
    berth_cli(berth, "rates", "set", "gpu:A100=default")
    assert _json(berth, "billing", "rates")["gpu:A100"] == "0.000583"
    bad = subprocess.run(
        [BIN / "berth", "rates", "set", "cpu=cheap", "--data-dir", str(berth.data_dir)], capture_output=True, text=True
    )
    assert bad.returncode == 1 and "not a number" in bad.stderr


def test_administrative_actions_are_audited_with_their_token_and_never_a_secret_value(berth: BerthServer) -> None:
    value = f"audit-secret-value-{secrets.token_hex(8)}"
    name = f"e2e-audited-{secrets.token_hex(3)}"
    env_name = f"audit-env-{secrets.token_hex(3)}"
    for args in (
        ("secret", "create", name, f"API_KEY={value}"),
        ("secret", "create", "--force", name, f"API_KEY={value}x"),
        ("secret", "delete", name, "--yes"),
        ("environment", "create", env_name),
        ("environment", "delete", env_name, "--yes"),
    ):
        run = modal(berth, *args, timeout=120)
        assert run.returncode == 0, run.output
    created = berth_cli(berth, "token", "create")
    token_id = created.split("token_id=")[1].split()[0]
    berth_cli(berth, "token", "revoke", token_id)

    entries = json.loads(berth_cli(berth, "audit", "--json"))
    mine = berth.env["MODAL_TOKEN_ID"]
    seen = {(e["action"], e["target_id"]): e for e in entries}
    assert seen[("secret.create", name)]["actor"] == mine
    assert seen[("secret.create", name)]["details"] == {"keys": "API_KEY"}
    assert seen[("secret.update", name)]["actor"] == mine
    assert seen[("environment.create", env_name)]["actor"] == mine
    assert ("environment.delete", env_name) in seen
    assert any(e["action"] == "secret.delete" and e["actor"] == mine for e in entries)
    assert seen[("token.create", token_id)]["actor"].startswith("local")
    assert ("token.revoke", token_id) in seen
    # Nothing of the values anywhere: the audit log, its RPC, the server's log or its database files.
    assert value not in json.dumps(entries)
    assert value not in berth.log()
    for path in berth.data_dir.glob("*.db*"):
        assert value.encode() not in path.read_bytes(), path
    listed = sdk(
        berth,
        """
        import asyncio
        from modal.client import _Client
        from modal_proto import api_pb2

        async def main():
            client = await _Client.from_env()
            listed = await client.stub.AuditLogList(api_pb2.AuditLogListRequest(limit=500))
            count = await client.stub.AuditLogCount(api_pb2.AuditLogCountRequest())
            print([(e.action, e.actor.id, e.targets[0].id, e.metadata_json) for e in listed.items], count.count)

        asyncio.run(main())
        """,
    )
    assert f"('secret.delete', '{mine}'" in listed and value not in listed


def test_a_deploy_and_an_app_stop_are_audited(berth: BerthServer) -> None:
    name = f"e2e-audit-deploy-{secrets.token_hex(3)}"
    run = modal(berth, "deploy", str(APPS / "metered.py"), "--name", name, timeout=180)
    assert run.returncode == 0, run.output
    stop = modal(berth, "app", "stop", name, "--yes", timeout=60)
    assert stop.returncode == 0, stop.output
    entries = json.loads(berth_cli(berth, "audit", "--json"))
    deploys = [e for e in entries if e["action"] == "app.deploy" and e["details"].get("name") == name]
    assert len(deploys) == 1 and deploys[0]["actor"] == berth.env["MODAL_TOKEN_ID"]
    assert deploys[0]["environment"] == "main"
    assert any(e["action"] == "app.stop" and e["target_id"] == deploys[0]["target_id"] for e in entries)


def test_a_cpu_burn_on_crun_is_metered_from_its_cgroup(berth_oci: BerthServer) -> None:
    berth_cli(berth_oci, "rates", "set", "cpu=1", "memory=0")
    run = modal(berth_oci, "run", str(APPS / "metered.py") + "::burn", "--seconds", str(BURN_S), timeout=900)
    assert run.returncode == 0, run.output
    wait_for(lambda: sum(float(r["cost"]) for r in _cpu_rows(berth_oci)) >= CPU_LOW, "the burn's CPU on crun", 30)
    cpu = sum(float(r["cost"]) for r in _cpu_rows(berth_oci))
    # The cgroup counts every process of the container to its exit: the burn and the entrypoint's own work.
    assert BURN_S <= cpu <= CPU_HIGH
    by_fn = json.loads(berth_cli(berth_oci, "usage", "--by", "app", "--json"))
    assert by_fn and by_fn[0]["memory_gib_s"] > 0


def test_a_cpu_burn_on_a_remote_worker_reaches_the_control_plane_over_its_link(tmp_path: Path) -> None:
    from tests.e2e.test_cluster import start_control_plane

    cluster = start_control_plane(tmp_path)
    try:
        cluster.add_worker("w1")
        cluster.wait_joined("w1")
        berth_cli(cluster.server, "rates", "set", "cpu=1", "memory=0")
        run = modal(cluster.server, "run", str(APPS / "metered.py") + "::burn", "--seconds", str(BURN_S), timeout=300)
        assert run.returncode == 0, run.output
        wait_for(lambda: sum(float(r["cost"]) for r in _cpu_rows(cluster.server)) >= CPU_LOW, "remote usage", 30)
        assert sum(float(r["cost"]) for r in _cpu_rows(cluster.server)) <= CPU_HIGH
    finally:
        cluster.stop()


def test_sandbox_costs_are_charged_back_by_their_tags(berth: BerthServer) -> None:
    berth_cli(berth, "rates", "set", "cpu=1", "memory=0")
    out = sdk(
        berth,
        """
        import json, time
        from datetime import datetime, timedelta, timezone
        import modal

        app = modal.App.lookup("e2e-metered-sandboxes", create_if_missing=True)
        burn = "import time\\nt = time.process_time()\\nwhile time.process_time() - t < 1.5: pass"
        boxes = {team: modal.Sandbox.create("python3", "-c", burn, app=app, tags={"team": team}) for team in "ab"}
        for sb in boxes.values():
            sb.wait()
        since = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
        for _ in range(100):
            groups = {g.tags["team"]: float(g.cost_by_resource.get("CPU", 0))
                      for g in app.sandboxes.stats(since=since, group_by_tags=["team"])}
            if len(groups) == 2 and min(groups.values()) >= 1.2:
                break
            time.sleep(0.3)
        stats = boxes["a"]._experimental_stats()
        print(json.dumps({"groups": groups, "cpu_a": stats.billed_cpu_core_seconds, "cost_a": str(stats.cost)}))
        """,
    )
    got = json.loads(out.strip().splitlines()[-1])
    assert set(got["groups"]) == {"a", "b"}, got
    for cpu in got["groups"].values():
        assert 1.2 <= cpu <= 1.5 + 2.0, got
    assert 1.2 <= got["cpu_a"] <= 3.5 and float(got["cost_a"]) >= 1.2
