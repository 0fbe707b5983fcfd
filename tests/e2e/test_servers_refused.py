"""Modal Servers (@app.server) are refused by name at deploy and at run, instead of a deploy that says "Created
Server" and then never runs anything."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.conftest import BerthServer, modal, python

REFUSAL = "Berth does not run Modal Servers (@app.server) yet"


def test_deploying_a_server_is_refused_with_the_reason(berth: BerthServer) -> None:
    run = modal(berth, "deploy", "server_app.py", timeout=300)
    assert run.returncode != 0
    assert REFUSAL in run.output and "@modal.web_server" in run.output
    assert "Created Server" not in run.output
    listing = modal(berth, "app", "list", "--json")
    assert listing.returncode == 0, listing.output
    deployed = {a["description"]: a["state"] for a in json.loads(listing.stdout)}
    assert deployed.get("e2e-server-refused") != "deployed"


def test_running_a_server_is_refused_with_the_reason(berth: BerthServer) -> None:
    code = "import sys; sys.path.insert(0, '.')\nfrom server_app import app\nwith app.run():\n    pass\n"
    run = python(berth, "-c", code, timeout=300)
    assert run.returncode != 0
    assert REFUSAL in run.output


def test_modal_curl_of_a_server_url_is_refused_by_name(berth: BerthServer, tmp_path: Path) -> None:
    """`modal curl` asks for a token only for a Server's *.modal.direct URL; Berth says why it has none."""
    url = "https://someone--app-web.us-east.modal.direct/"
    run = modal(berth, "curl", "-s", url, env={"XDG_CACHE_HOME": str(tmp_path)})
    assert run.returncode != 0
    assert "Berth does not issue `modal curl` tokens" in run.output and "berth web-token create" in run.output
