"""`modal token info`, `modal profile list` and `modal workspace ...` against Berth: the identity is the real
token and workspace, member tokens are `berth token create`'s and can be disabled, enabled and deleted,
service users are named tokens with no access until given a role, proxy tokens are the web front door's, and
what has no meaning here (members, per-environment proxy tokens, settable defaults) is refused by name."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.e2e.conftest import BIN, BerthServer, modal


def _token(berth: BerthServer) -> dict[str, str]:
    made = subprocess.run(
        [str(BIN / "berth"), "token", "create", "--data-dir", str(berth.data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    pairs = dict(line.split("=", 1) for line in made.stdout.split())
    return {**berth.env, "MODAL_TOKEN_ID": pairs["token_id"], "MODAL_TOKEN_SECRET": pairs["token_secret"]}


def test_token_info_and_profile_list_report_the_real_identity(berth: BerthServer, tmp_path: Path) -> None:
    env = _token(berth)
    info = modal(berth, "token", "info", env=env)
    assert info.returncode == 0, info.output
    assert env["MODAL_TOKEN_ID"] in info.output and "Workspace: berth (ac-berth)" in info.output
    assert "Created at" in info.output

    config = {k: v for k, v in env.items() if k not in ("MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET")}
    config["MODAL_CONFIG_PATH"] = str(tmp_path / "modal.toml")
    set_ = modal(
        berth, "token", "set", "--token-id", env["MODAL_TOKEN_ID"], "--token-secret", env["MODAL_TOKEN_SECRET"],
        "--profile", "ws", env=config,
    )  # fmt: skip
    assert set_.returncode == 0, set_.output
    profiles = modal(berth, "profile", "list", "--json", env=config)
    assert profiles.returncode == 0, profiles.output
    assert [(p["name"], p["workspace"]) for p in json.loads(profiles.stdout)] == [("ws", "berth")]


def test_member_tokens_are_listed_disabled_enabled_and_deleted(berth: BerthServer) -> None:
    env = _token(berth)
    token_id = env["MODAL_TOKEN_ID"]
    listed = modal(berth, "workspace", "member-tokens", "list", "--json")
    assert listed.returncode == 0, listed.output
    assert {t["token_id"]: t["disabled"] for t in json.loads(listed.stdout)}[token_id] is False

    assert modal(berth, "workspace", "member-tokens", "disable", token_id, "--yes").returncode == 0
    locked = modal(berth, "app", "list", env=env)
    assert locked.returncode != 0 and "Token is not valid" in locked.output, locked.output
    listed = modal(berth, "workspace", "member-tokens", "list", "--json")
    assert {t["token_id"]: t["disabled"] for t in json.loads(listed.stdout)}[token_id] is True
    assert modal(berth, "workspace", "member-tokens", "enable", token_id, "--yes").returncode == 0
    assert modal(berth, "app", "list", env=env).returncode == 0
    # A restricted token may not manage tokens.
    viewer = modal(berth, "environment", "roles", "update", "main", token_id, "--service-user", "--role", "viewer")
    assert viewer.returncode == 0, viewer.output
    refused = modal(berth, "workspace", "member-tokens", "disable", berth.env["MODAL_TOKEN_ID"], "--yes", env=env)
    assert refused.returncode != 0 and "full access" in refused.output, refused.output

    deleted = modal(berth, "workspace", "member-tokens", "delete", token_id, "--yes")
    assert deleted.returncode == 0, deleted.output
    assert modal(berth, "app", "list", env=env).returncode != 0
    listed = modal(berth, "workspace", "member-tokens", "list", "--json")
    assert token_id not in {t["token_id"] for t in json.loads(listed.stdout)}


def test_service_users_have_no_access_until_given_a_role(berth: BerthServer) -> None:
    made = modal(berth, "workspace", "service-users", "create", "e2e-bot", "--json")
    assert made.returncode == 0, made.output
    creds = json.loads(made.stdout)
    bot = {**berth.env, "MODAL_TOKEN_ID": creds["token_id"], "MODAL_TOKEN_SECRET": creds["token_secret"]}
    try:
        again = modal(berth, "workspace", "service-users", "create", "e2e-bot")
        assert again.returncode != 0 and "already exists" in again.output, again.output
        listed = modal(berth, "workspace", "service-users", "list", "--json")
        assert "e2e-bot" in {u["name"] for u in json.loads(listed.stdout)}
        info = modal(berth, "token", "info", env=bot)
        assert info.returncode == 0 and "Service User: e2e-bot" in info.output, info.output

        denied = modal(berth, "app", "list", env=bot)
        assert denied.returncode != 0 and "no access to environment 'main'" in denied.output, denied.output
        granted = modal(berth, "workspace", "service-users", "set-role", "e2e-bot", "main", "viewer")
        assert granted.returncode == 0, granted.output
        assert modal(berth, "app", "list", env=bot).returncode == 0
        shown = modal(berth, "workspace", "service-users", "info", "e2e-bot", "--json")
        assert shown.returncode == 0 and "viewer" in shown.output, shown.output
    finally:
        gone = modal(berth, "workspace", "service-users", "delete", "e2e-bot", "--yes")
        assert gone.returncode == 0, gone.output
    assert modal(berth, "app", "list", env=bot).returncode != 0


def test_proxy_tokens_settings_and_what_berth_refuses(berth: BerthServer) -> None:
    made = modal(berth, "workspace", "proxy-tokens", "create", "--json")
    assert made.returncode == 0, made.output
    key = json.loads(made.stdout)["Modal-Key"]
    assert key.startswith("wk-")
    listed = modal(berth, "workspace", "proxy-tokens", "list", "--json")
    assert listed.returncode == 0 and key in listed.output, listed.output
    scoped = modal(berth, "workspace", "proxy-tokens", "allow", key, "main")
    assert scoped.returncode != 0 and "valid for every web endpoint" in scoped.output, scoped.output
    assert modal(berth, "workspace", "proxy-tokens", "delete", key, "--yes").returncode == 0
    assert key not in modal(berth, "workspace", "proxy-tokens", "list", "--json").output

    settings = modal(berth, "workspace", "settings", "list", "--json")
    assert settings.returncode == 0, settings.output
    assert {"setting": "default-environment", "value": "main"} in json.loads(settings.stdout)
    members = modal(berth, "workspace", "members", "list")
    assert members.returncode != 0 and "not have workspace members" in members.output, members.output
    default = modal(berth, "workspace", "settings", "set", "default-environment", "other")
    assert default.returncode != 0 and "always 'main'" in default.output, default.output
