"""`modal token new` against Berth: the CLI prints the server's approval page and a code; an operator signed in
to the dashboard sees the same code there and approves, and the CLI stores a new working token."""

from __future__ import annotations

import re
import subprocess
import threading
import time
from pathlib import Path

import requests

from tests.e2e.conftest import BIN, BerthServer


def test_modal_token_new_gets_a_token_approved_in_the_dashboard(berth: BerthServer, tmp_path: Path) -> None:
    config = tmp_path / "modal.toml"
    env = {k: v for k, v in berth.env.items() if k not in ("MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET")}
    env |= {"MODAL_CONFIG_PATH": str(config), "BROWSER": "false", "COLUMNS": "300"}
    proc = subprocess.Popen(
        [str(BIN / "modal"), "token", "new", "--profile", "approved"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.extend(iter(proc.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        deadline = time.monotonic() + 60
        found = None
        while found is None and time.monotonic() < deadline:
            found = re.search(r"(http://\S+/token-flow/(tf-\w+)).*?Enter this code: (\S+)", "".join(out), re.S)
            time.sleep(0.2)
        assert found is not None, "".join(out)
        url, code = found.group(1), found.group(3)

        session = requests.Session()
        login = {"token_id": berth.env["MODAL_TOKEN_ID"], "token_secret": berth.env["MODAL_TOKEN_SECRET"]}
        base = url.split("/token-flow/")[0]
        assert session.post(f"{base}/login", data=login, allow_redirects=False, timeout=30).status_code == 303
        shown = session.get(url, timeout=30)
        assert shown.status_code == 200 and code in shown.text
        assert requests.get(url, allow_redirects=False, timeout=30).status_code == 303  # signed out: to /login
        approved = session.post(f"{url}/approve", timeout=30)
        assert approved.status_code == 200 and "Approved" in approved.text
        assert proc.wait(timeout=60) == 0, "".join(out)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=5)
    token_id = re.search(r'token_id = "(ak-[\w-]+)"', config.read_text())
    assert token_id is not None and token_id.group(1) != berth.env["MODAL_TOKEN_ID"], config.read_text()
    info = subprocess.run(
        [str(BIN / "modal"), "token", "info"],
        env={**env, "MODAL_PROFILE": "approved"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert info.returncode == 0 and token_id.group(1) in info.stdout, info.stdout + info.stderr
