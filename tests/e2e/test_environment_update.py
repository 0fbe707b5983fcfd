"""`modal environment update`: a rename moves the environment's apps, named objects and token roles along;
the settings that mean nothing on Berth (web suffix, image builder version) are refused by name."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.conftest import BerthServer, modal


def test_rename_moves_apps_and_objects_and_unsupported_settings_are_refused(berth: BerthServer, tmp_path: Path) -> None:
    assert modal(berth, "environment", "create", "before-rename").returncode == 0
    app = tmp_path / "renamed_app.py"
    app.write_text("import modal\napp = modal.App('e2e-renamed')\n@app.function()\ndef f() -> int:\n    return 7\n")
    try:
        assert modal(berth, "deploy", "--env", "before-rename", str(app), timeout=120).returncode == 0
        assert modal(berth, "dict", "create", "--env", "before-rename", "renamed-dict").returncode == 0

        renamed = modal(berth, "environment", "update", "before-rename", "--set-name", "after-rename")
        assert renamed.returncode == 0 and "Environment updated" in renamed.output, renamed.output
        envs = modal(berth, "environment", "list", "--json")
        names = {e["name"] for e in json.loads(envs.stdout)}
        assert "after-rename" in names and "before-rename" not in names
        apps = modal(berth, "app", "list", "--env", "after-rename", "--json")
        assert [a["description"] for a in json.loads(apps.stdout)] == ["e2e-renamed"], apps.output
        dicts = modal(berth, "dict", "list", "--env", "after-rename", "--json")
        assert [d["name"] for d in json.loads(dicts.stdout)] == ["renamed-dict"], dicts.output
        gone = modal(berth, "app", "list", "--env", "before-rename")
        assert gone.returncode != 0 and "not found" in gone.output

        suffix = modal(berth, "environment", "update", "after-rename", "--set-web-suffix", "x")
        assert suffix.returncode != 0 and "web suffix" in suffix.output, suffix.output
        main = modal(berth, "environment", "update", "main", "--set-name", "primary")
        assert main.returncode != 0 and "cannot be renamed" in main.output, main.output
    finally:
        for env in ("after-rename", "before-rename"):
            modal(berth, "app", "stop", "--yes", "--env", env, "e2e-renamed")
            modal(berth, "dict", "delete", "--yes", "--env", env, "renamed-dict")
            modal(berth, "environment", "delete", "--yes", env)
