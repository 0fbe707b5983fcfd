"""Tokens and environments through the berth CLI and the stock modal CLI/SDK."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.e2e.conftest import APPS, BIN, BerthServer, last_json, modal, python, run_cmd, sdk


def _berth(server: BerthServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "berth"), *args, "--data-dir", str(server.data_dir)], capture_output=True, text=True, timeout=60
    )


def _new_token(server: BerthServer, *extra: str) -> dict[str, str]:
    made = _berth(server, "token", "create", *extra)
    assert made.returncode == 0, made.stderr
    pairs = dict(line.split("=", 1) for line in made.stdout.split())
    return {"MODAL_TOKEN_ID": pairs["token_id"], "MODAL_TOKEN_SECRET": pairs["token_secret"]}


def _app(tmp: Path, name: str, value: str) -> Path:
    path = tmp / f"{name}.py"
    path.write_text(
        f"import modal\napp = modal.App({name!r})\n@app.function()\ndef which() -> str:\n    return {value!r}\n"
    )
    return path


def test_tokens_are_stored_hashed_and_revocation_locks_the_client_out(berth: BerthServer) -> None:
    env = _new_token(berth)
    ok = modal(berth, "app", "list", env=env)
    assert ok.returncode == 0, ok.output
    assert env["MODAL_TOKEN_SECRET"].encode() not in (berth.data_dir / "berth.db").read_bytes()
    listed = _berth(berth, "token", "list")
    assert env["MODAL_TOKEN_ID"] in listed.stdout and env["MODAL_TOKEN_SECRET"] not in listed.stdout
    assert _berth(berth, "token", "revoke", env["MODAL_TOKEN_ID"]).returncode == 0
    refused = modal(berth, "app", "list", env=env)
    assert refused.returncode != 0
    assert "Token is not valid" in refused.output


def test_wrong_token_secret_shows_the_auth_error(berth: BerthServer) -> None:
    env = {**berth.env, "MODAL_TOKEN_SECRET": "wrong"}
    run = run_cmd(berth, [sys.executable, str(APPS / "app_run.py")], env=env, timeout=120)
    assert run.returncode != 0
    assert "AuthError" in run.output or "Token is not valid" in run.output


def test_modal_token_set_info_and_profile_work_against_berth(berth: BerthServer, tmp_path: Path) -> None:
    env = {**_new_token(berth), "MODAL_CONFIG_PATH": str(tmp_path / "modal.toml")}
    token_id, secret = env.pop("MODAL_TOKEN_ID"), env.pop("MODAL_TOKEN_SECRET")
    base = {k: v for k, v in berth.env.items() if k not in ("MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET")}
    full = {**base, **env}
    run = subprocess.run(
        [str(BIN / "modal"), "token", "set", "--token-id", token_id, "--token-secret", secret, "--profile", "berth"],
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert token_id in (tmp_path / "modal.toml").read_text()
    info = subprocess.run([str(BIN / "modal"), "token", "info"], env=full, capture_output=True, text=True, timeout=60)
    assert info.returncode == 0, info.stdout + info.stderr
    assert token_id in info.stdout
    prof = subprocess.run([str(BIN / "modal"), "profile", "current"], env=full, capture_output=True, text=True)
    assert prof.returncode == 0 and "berth" in prof.stdout


def test_environments_separate_app_names(berth: BerthServer, tmp_path: Path) -> None:
    assert modal(berth, "environment", "create", "staging").returncode == 0
    listed = modal(berth, "environment", "list", "--json")
    assert "staging" in listed.stdout and "main" in listed.stdout
    main_app, staging_dir = _app(tmp_path, "twin", "main"), tmp_path / "staging"
    staging_dir.mkdir()
    staging_app = _app(staging_dir, "twin", "staging")
    assert modal(berth, "deploy", str(main_app)).returncode == 0
    deployed = modal(berth, "deploy", str(staging_app), "-e", "staging")
    assert deployed.returncode == 0, deployed.output
    code = "import modal; print(modal.Function.from_name('twin', 'which').remote())"
    assert run_cmd(berth, [sys.executable, "-c", code]).stdout.strip() == "main"
    staged = run_cmd(berth, [sys.executable, "-c", code], env={"MODAL_ENVIRONMENT": "staging"})
    assert staged.stdout.strip() == "staging", staged.output


def test_token_scoped_to_an_environment_cannot_act_in_another(berth: BerthServer, tmp_path: Path) -> None:
    assert modal(berth, "environment", "create", "scoped").returncode == 0
    env = _new_token(berth, "--env", "scoped")
    inside = modal(berth, "deploy", str(_app(tmp_path, "scoped-app", "x")), "-e", "scoped", env=env)
    assert inside.returncode == 0, inside.output
    outside = modal(berth, "app", "list", "-e", "main", env=env)
    assert outside.returncode != 0
    assert "may only act in environment 'scoped'" in outside.output


def test_unknown_environment_and_deletion(berth: BerthServer) -> None:
    missing = modal(berth, "app", "list", "-e", "nope")
    assert missing.returncode != 0 and "Environment 'nope' not found" in missing.output
    assert modal(berth, "environment", "create", "temp").returncode == 0
    assert modal(berth, "environment", "delete", "temp", "--yes").returncode == 0
    assert "temp" not in modal(berth, "environment", "list", "--json").stdout


def test_auth_token_is_a_jwt_that_expires_and_names_the_token(berth: BerthServer) -> None:
    """`AuthTokenGet` (sandboxes V2 and the JS SDK wait on it): the stock client's token manager takes the
    token, reads its `exp` and keeps it until shortly before then."""
    out = sdk(
        berth,
        """
import asyncio, json, time
from modal.client import Client
from modal._utils.auth_token_manager import _AuthTokenManager

async def main():
    client = await Client.from_env.aio()
    manager = _AuthTokenManager(client.stub)
    token = await manager.get_token()
    claims = manager._decode_jwt(token)
    print(json.dumps({"claims": claims, "now": time.time(), "again": await manager.get_token() == token}))

asyncio.run(main())
""",
    )
    result = last_json(out)
    claims = result["claims"]
    assert claims["sub"] == berth.env["MODAL_TOKEN_ID"]
    assert 600 < claims["exp"] - result["now"] <= 3600 + 5
    assert result["again"] is True


def test_a_token_scoped_to_an_environment_cannot_reach_another_environments_objects_by_id(
    berth: BerthServer,
) -> None:
    """By-id calls carry no environment name: the scope is checked on the object the id names."""
    assert modal(berth, "environment", "create", "fenced").returncode in (0, 1)  # 1: it exists already
    made = last_json(
        sdk(
            berth,
            """
import json, modal
d = modal.Dict.from_name("fence-dict", create_if_missing=True, environment_name="main")
d["k"] = "v"
q = modal.Queue.from_name("fence-queue", create_if_missing=True, environment_name="main")
v = modal.Volume.from_name("fence-vol", create_if_missing=True, environment_name="main")
d.hydrate(); q.hydrate(); v.hydrate()
print(json.dumps({"dict": d.object_id, "queue": q.object_id, "volume": v.object_id}))
""",
        )
    )
    probe = """
import json, modal
out = {}
for kind, call in [
    ("dict", lambda: modal.Dict.from_id(IDS["dict"]).get("k")),
    ("queue", lambda: modal.Queue.from_id(IDS["queue"]).len()),
    ("volume", lambda: list(modal.Volume.from_id(IDS["volume"]).listdir("/"))),
]:
    try:
        out[kind] = ["ok", repr(call())]
    except Exception as exc:
        out[kind] = [type(exc).__name__, str(exc)]
print(json.dumps(out))
""".replace("IDS", repr(made))
    inside = last_json(sdk(berth, probe))  # the server's own token: every environment
    assert inside["dict"] == ["ok", "'v'"] and inside["queue"][0] == "ok" and inside["volume"][0] == "ok", inside
    scoped = {**berth.env, **_new_token(berth, "--env", "fenced")}
    run = python(berth, "-c", probe, env=scoped)
    assert run.returncode == 0, run.output
    outside = last_json(run.stdout)
    for kind in ("dict", "queue", "volume"):
        assert outside[kind][0] != "ok" and "may only act in environment 'fenced'" in outside[kind][1], outside
