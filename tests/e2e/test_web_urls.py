"""Web endpoint URLs: stable across serve reloads, redeploys and server restarts; printed by serve and
deploy the way Modal prints them; returned by get_web_url(); gone (404) once their app stops."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import requests

from tests.e2e.conftest import APPS, BerthServer, modal, run_cmd, start_server, stop_server
from tests.e2e.webserve import Serve


def _app_text(version: str) -> str:
    return (APPS / "web_small.py").read_text().replace('VERSION = "v1"', f'VERSION = "{version}"')


def _app_copy(tmp: Path, version: str) -> Path:
    target = tmp / "web_small.py"
    target.write_text(_app_text(version))
    return target


def _get(url: str) -> requests.Response:
    return requests.get(url, timeout=120)


def _eventually(url: str, expected: str, timeout: float = 120, serve: Serve | None = None) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = _get(url)
        if last.status_code == 200 and last.json() == expected:
            return
        time.sleep(1)
    output = f"\nmodal serve output:\n{serve.output}" if serve else ""
    raise AssertionError(f"{url} never answered {expected!r}; last: {last.status_code if last else None}{output}")


def test_serve_reloads_on_file_change_and_keeps_the_url(berth: BerthServer, tmp_path: Path) -> None:
    path = _app_copy(tmp_path, "v1")
    serve = Serve(berth, str(path), cwd=tmp_path)
    try:
        serve.wait_for("Serving...", timeout=1200)
        serve.wait_watching(tmp_path)
        url = serve.urls["version"]
        assert _get(url).json() == "v1"
        serve.edit(path, _app_text("v2"), expect="Created Function version")
        _eventually(url, "v2", serve=serve)
        assert serve.urls["version"] == url
        # A reload that drops an endpoint leaves its URL answering 404. One write, so one reload.
        label_url = serve.urls["labelled"]
        text = _app_text("v3")
        without_label = text[: text.index("@app.function()\n@modal.fastapi_endpoint(label=")]
        serve.edit(path, without_label, expect="Created Function version")
        _eventually(url, "v3", serve=serve)
        assert _get(label_url).status_code == 404
    finally:
        out = serve.stop()
    # The reload retired the v1 container through TaskList + ContainerStop (the recreate strategy).
    assert "Terminating running containers" in out, out
    # The app stopped with serve: its URL now answers 404 instead of running code.
    assert _get(url).status_code == 404


def test_unknown_url_gets_404(berth: BerthServer) -> None:
    http_url = berth.env["MODAL_SERVER_URL"].rsplit(":", 1)
    main_http = f"{http_url[0]}:{int(http_url[1]) + 1}"
    assert requests.get(main_http + "/no-such-endpoint", timeout=30).status_code == 404


def test_deploy_prints_urls_and_redeploy_keeps_them(berth: BerthServer, tmp_path: Path) -> None:
    first = modal(berth, "deploy", str(_app_copy(tmp_path, "d1")), timeout=180)
    assert first.returncode == 0, first.output
    urls = [w for w in first.output.split() if w.startswith("http://") and "/apps/" not in w]
    assert len(urls) == 2, first.output
    assert "-dev" not in first.output
    # The CLI's listing order is not part of the contract: tell the endpoints apart by what they answer.
    by_answer = {_get(url).json(): url for url in urls}
    assert set(by_answer) == {"d1", "labelled d1"}
    version_url = by_answer["d1"]
    code = "import modal; print(modal.Function.from_name('e2e-web-small', 'version').get_web_url())"
    looked_up = run_cmd(berth, [sys.executable, "-c", code], timeout=120)
    assert looked_up.returncode == 0, looked_up.output
    assert looked_up.stdout.strip().splitlines()[-1] == version_url

    second = modal(berth, "deploy", str(_app_copy(tmp_path, "d2")), timeout=180)
    assert second.returncode == 0, second.output
    assert sorted(w for w in second.output.split() if w.startswith("http://") and "/apps/" not in w) == sorted(urls)
    _eventually(version_url, "d2")
    stopped = modal(berth, "app", "stop", "--yes", "e2e-web-small", timeout=120)
    assert stopped.returncode == 0, stopped.output
    assert _get(version_url).status_code == 404


def test_url_survives_a_server_restart(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data")
    try:
        serve = Serve(server, str(_app_copy(tmp_path, "r1")), cwd=tmp_path)
        serve.wait_for("Serving...", timeout=1200)
        url = serve.urls["labelled"]
        assert _get(url).json() == "labelled r1"
        serve.stop()
        assert stop_server(server) == 0
        server = start_server(tmp_path / "data")
        serve = Serve(server, str(_app_copy(tmp_path, "r2")), cwd=tmp_path)
        serve.wait_for("Serving...", timeout=1200)
        assert serve.urls["labelled"] == url
        assert _get(url).json() == "labelled r2"
        serve.stop()
    finally:
        if server.proc.poll() is None:
            stop_server(server)


def test_server_stops_promptly_while_a_client_streams(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data")
    serve = Serve(server, "web_app.py")
    try:
        serve.wait_for("Serving...", timeout=1200)
        with requests.get(serve.urls["api"] + "/endless", params={"tag": "shutdown"}, stream=True, timeout=120) as r:
            assert next(r.iter_lines()).startswith(b"tick")
            started = time.monotonic()
            assert stop_server(server) == 0
            # A bound only against hanging: open streams must not hold the server for a minute.
            assert time.monotonic() - started < 30
    finally:
        serve.stop()
        if server.proc.poll() is None:
            stop_server(server)
