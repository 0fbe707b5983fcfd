"""The web dashboard over plain HTTP: sign-in is enforced (form, one-time link, revocation on every request,
environment scope), unknown ids give 404 pages, secret values never appear, and `modal dashboard` (the stock
CLI) prints the dashboard's URL. tests/e2e/test_dashboard_browser.py drives the same pages in Chromium."""

from __future__ import annotations

import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
import requests

from tests.e2e.conftest import BIN, BerthServer, modal


def berth_cli(server: BerthServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "berth"), *args, "--data-dir", str(server.data_dir)], capture_output=True, text=True, timeout=60
    )


def new_token(server: BerthServer, *extra: str) -> tuple[str, str]:
    made = berth_cli(server, "token", "create", *extra)
    assert made.returncode == 0, made.stderr
    pairs = dict(line.split("=", 1) for line in made.stdout.split())
    return pairs["token_id"], pairs["token_secret"]


def http_url(server: BerthServer) -> str:
    return f"http://127.0.0.1:{server.port + 1}"


def signed_in(server: BerthServer, token: tuple[str, str]) -> requests.Session:
    session = requests.Session()
    form = {"token_id": token[0], "token_secret": token[1], "next": "/apps"}
    resp = session.post(f"{http_url(server)}/login", data=form, allow_redirects=False, timeout=30)
    assert resp.status_code == 303, resp.text
    return session


@pytest.fixture(scope="module")
def ran_app(berth: BerthServer) -> Iterator[str]:
    """The app id of a `modal run` of dashboard_app.py (a real function ran, another failed)."""
    run = modal(berth, "run", "dashboard_app.py")
    assert run.returncode == 0, run.output
    assert "hello dashboard" in run.output
    found = re.search(r"View run at (\S+/apps/(ap-\w+))", run.output)
    assert found, run.output
    assert found.group(1).startswith(http_url(berth))
    yield found.group(2)


def test_pages_redirect_to_sign_in_without_a_session(berth: BerthServer) -> None:
    for path in ("/apps", "/apps/ap-anything", "/containers", "/storage", "/usage", "/images"):
        resp = requests.get(http_url(berth) + path, allow_redirects=False, timeout=30)
        assert resp.status_code == 303, path
        assert resp.headers["Location"].startswith("/login?next="), path
    stream = requests.get(f"{http_url(berth)}/apps/ap-x/logs/stream", allow_redirects=False, timeout=30)
    assert stream.status_code == 401
    forged = requests.get(f"{http_url(berth)}/apps", cookies={"berth_dashboard": "forged"}, allow_redirects=False)
    assert forged.status_code == 303


def test_a_wrong_token_is_refused_and_a_right_one_gets_a_strict_httponly_cookie(berth: BerthServer) -> None:
    token_id, secret = new_token(berth)
    wrong = requests.post(
        f"{http_url(berth)}/login", data={"token_id": token_id, "token_secret": "wrong"}, allow_redirects=False
    )
    assert wrong.status_code == 401 and "not valid" in wrong.text and "Set-Cookie" not in wrong.headers
    right = requests.post(
        f"{http_url(berth)}/login",
        data={"token_id": token_id, "token_secret": secret, "next": "https://evil.example/"},
        allow_redirects=False,
    )
    assert right.status_code == 303
    assert right.headers["Location"] == "/apps"  # never off-site
    cookie = right.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie


def test_a_revoked_token_loses_the_dashboard_on_its_next_request(berth: BerthServer) -> None:
    token = new_token(berth)
    session = signed_in(berth, token)
    assert session.get(f"{http_url(berth)}/apps", allow_redirects=False).status_code == 200
    assert berth_cli(berth, "token", "revoke", token[0]).returncode == 0
    after = session.get(f"{http_url(berth)}/apps", allow_redirects=False)
    assert after.status_code == 303 and after.headers["Location"].startswith("/login")


def test_a_one_time_link_signs_in_once(berth: BerthServer) -> None:
    made = berth_cli(berth, "dashboard-link")
    assert made.returncode == 0, made.stderr
    link = made.stdout.strip()
    assert link.startswith(f"{http_url(berth)}/login/link?code=")
    session = requests.Session()
    first = session.get(link, allow_redirects=False)
    assert first.status_code == 303 and "SameSite=Strict" in first.headers["Set-Cookie"]
    assert session.get(f"{http_url(berth)}/apps", allow_redirects=False).status_code == 200
    again = requests.get(link, allow_redirects=False)
    assert again.status_code == 403 and "already used" in again.text
    # The link's token ends what the link opened.
    token_id = re.search(r"token (ak-\w+)", made.stderr)
    assert token_id, made.stderr
    assert berth_cli(berth, "token", "revoke", token_id.group(1)).returncode == 0
    assert session.get(f"{http_url(berth)}/apps", allow_redirects=False).status_code == 303


def test_unknown_ids_give_a_404_page(berth: BerthServer) -> None:
    session = signed_in(berth, new_token(berth))
    for path in (
        "/apps/ap-doesnotexist",
        "/apps/ap-doesnotexist/logs",
        "/functions/fu-doesnotexist",
        "/calls/fc-doesnotexist",
        "/images/im-doesnotexist",
        "/apps?env=no-such-env",
        "/apps/<script>alert(1)</script>",
    ):
        resp = session.get(http_url(berth) + path, allow_redirects=False)
        assert resp.status_code == 404, (path, resp.text)
        assert "text/html" in resp.headers["Content-Type"]
        assert "Traceback" not in resp.text and "<script>alert" not in resp.text
    bad = session.post(f"{http_url(berth)}/apps/ap-doesnotexist/rollback", data={"version": "1"})
    assert bad.status_code == 404


def test_pages_show_an_app_that_ran_a_function(berth: BerthServer, ran_app: str) -> None:
    session = signed_in(berth, new_token(berth))
    app_page = session.get(f"{http_url(berth)}/apps/{ran_app}")
    assert app_page.status_code == 200
    assert "e2e-dashboard" in app_page.text and "greet" in app_page.text
    function_id = re.search(r'href="/functions/(fu-\w+)">greet<', app_page.text)
    assert function_id, app_page.text
    fn_page = session.get(f"{http_url(berth)}/functions/{function_id.group(1)}")
    assert fn_page.status_code == 200 and "succeeded" in fn_page.text
    call_id = re.search(r'href="/calls/(fc-\w+)"', fn_page.text)
    assert call_id, fn_page.text
    assert session.get(f"{http_url(berth)}/calls/{call_id.group(1)}").status_code == 200
    of_call = session.get(f"{http_url(berth)}/apps/{ran_app}/logs?call={call_id.group(1)}")
    assert "greeting dashboard" in of_call.text and "broken on purpose" not in of_call.text
    broken_id = re.search(r'href="/functions/(fu-\w+)">broken<', app_page.text)
    assert broken_id
    assert "failed" in session.get(f"{http_url(berth)}/functions/{broken_id.group(1)}").text
    logs = session.get(f"{http_url(berth)}/apps/{ran_app}/logs")
    assert "greeting dashboard" in logs.text
    only_broken = session.get(f"{http_url(berth)}/apps/{ran_app}/logs?function={broken_id.group(1)}")
    assert "broken on purpose" in only_broken.text and "greeting dashboard" not in only_broken.text
    containers = session.get(f"{http_url(berth)}/containers")
    assert containers.status_code == 200 and "greet" in containers.text
    assert "app stopped" in containers.text  # the exit reason of the run's containers
    usage = session.get(f"{http_url(berth)}/usage?hours=1")
    assert usage.status_code == 200 and "usage-chart" in usage.text
    listed = session.get(f"{http_url(berth)}/apps")
    assert ran_app in listed.text and "stopped" in listed.text


def test_a_token_scoped_to_an_environment_sees_only_that_environment(berth: BerthServer, ran_app: str) -> None:
    assert modal(berth, "environment", "create", "dash-scoped").returncode == 0
    session = signed_in(berth, new_token(berth, "--env", "dash-scoped"))
    assert session.get(f"{http_url(berth)}/apps/{ran_app}").status_code == 404  # ran_app lives in main
    assert session.get(f"{http_url(berth)}/apps?env=main").status_code == 404
    own = session.get(f"{http_url(berth)}/apps")
    assert own.status_code == 200 and ran_app not in own.text


def _crawl(session: requests.Session, base: str, start: list[str], limit: int = 200) -> dict[str, str]:
    """Every page reachable from `start` by same-site links (log streams and sign-out left out)."""
    pages: dict[str, str] = {}
    todo = list(start)
    while todo and len(pages) < limit:
        path = todo.pop()
        if path in pages:
            continue
        resp = session.get(base + path, timeout=60)
        pages[path] = resp.text
        for href in re.findall(r'(?:href|src)="([^"]+)"', resp.text):
            parts = urlsplit(urljoin(base + path, href.replace("&amp;", "&")))
            target = parts.path + (f"?{parts.query}" if parts.query else "")
            if parts.netloc == urlsplit(base).netloc and "/stream" not in target and target not in pages:
                todo.append(target)
    return pages


def test_secret_values_never_appear_in_the_dashboard(berth: BerthServer, ran_app: str) -> None:
    value = f"dashboard-secret-{uuid.uuid4().hex}"
    made = modal(berth, "secret", "create", "dash-secret", f"DASH_SECRET={value}")
    assert made.returncode == 0, made.output
    for kind in ("volume", "dict", "queue"):
        assert modal(berth, kind, "create", f"dash-{kind}").returncode == 0
    session = signed_in(berth, new_token(berth))
    pages = _crawl(session, http_url(berth), ["/apps", "/storage", "/containers", "/images", "/usage"])
    for name in ("dash-secret", "dash-volume", "dash-dict", "dash-queue"):
        assert name in pages["/storage"], name
    assert any(p.startswith("/functions/") for p in pages) and any(p.startswith("/calls/") for p in pages)
    leaked = [path for path, text in pages.items() if value in text]
    assert leaked == []


def test_modal_dashboard_prints_the_dashboard_url(berth: BerthServer) -> None:
    env = {"DISPLAY": "", "WAYLAND_DISPLAY": "", "BROWSER": ""}
    run = modal(berth, "dashboard", env=env)
    assert run.returncode == 0, run.output
    expected = f"{http_url(berth)}/apps?env=main"
    assert expected in run.output, run.output
    session = signed_in(berth, new_token(berth))
    page = session.get(expected)
    assert page.status_code == 200 and "<h1>Apps</h1>" in page.text


def test_image_builds_show_with_their_logs(berth_oci: BerthServer) -> None:
    nonce = uuid.uuid4().hex[:10]
    run = modal(berth_oci, "run", "dashboard_image.py::built", env={"BERTH_TEST_NONCE": nonce}, timeout=600)
    assert run.returncode == 0, run.output
    session = signed_in(berth_oci, new_token(berth_oci))
    images = session.get(f"{http_url(berth_oci)}/images")
    assert images.status_code == 200 and "succeeded" in images.text
    image_ids = re.findall(r'href="/images/(im-\w+)"', images.text)
    logs = [session.get(f"{http_url(berth_oci)}/images/{image_id}").text for image_id in image_ids]
    assert any(f"dashboard-build-{nonce}" in text and "Built image" in text for text in logs), logs
    # A token scoped to another environment sees none of main's builds.
    assert modal(berth_oci, "environment", "create", "dash-images-other").returncode == 0
    other = signed_in(berth_oci, new_token(berth_oci, "--env", "dash-images-other"))
    hidden = other.get(f"{http_url(berth_oci)}/images")
    assert hidden.status_code == 200 and not any(image_id in hidden.text for image_id in image_ids)
    assert other.get(f"{http_url(berth_oci)}/images/{image_ids[0]}").status_code == 404


def test_a_revoked_token_ends_an_open_log_stream(berth: BerthServer, tmp_path: Path) -> None:
    source = tmp_path / "dash_stream.py"
    source.write_text("import modal\napp = modal.App('dash-stream')\n@app.function()\ndef f() -> int:\n    return 1\n")
    deployed = modal(berth, "deploy", str(source))
    assert deployed.returncode == 0, deployed.output
    app_id = re.search(r"/apps/(ap-\w+)", deployed.output)
    assert app_id, deployed.output
    token = new_token(berth)
    session = signed_in(berth, token)
    started = time.monotonic()
    with session.get(f"{http_url(berth)}/apps/{app_id.group(1)}/logs/stream", stream=True, timeout=60) as stream:
        assert stream.status_code == 200 and stream.headers["Content-Type"].startswith("text/event-stream")
        assert berth_cli(berth, "token", "revoke", token[0]).returncode == 0
        events = [line for line in stream.iter_lines(decode_unicode=True) if line.startswith("event:")]
    assert events == ["event: signed-out"]
    assert time.monotonic() - started < 30
