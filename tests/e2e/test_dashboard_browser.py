"""The web dashboard in headless Chromium (Debian's chromium + chromium-driver, driven by Selenium): sign-in is
enforced, the stock client's 'View run at' URL lands on the app's page after a real `modal run`, and live logs
arrive in the page while a function prints. With BERTH_DASHBOARD_SCREENSHOTS=<dir> the test saves the
screenshots shown in the README (docs/dashboard-*.png)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import APPS, BIN, BerthServer, modal, sdk, wait_for
from tests.e2e.test_dashboard import berth_cli, http_url, new_token

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="headless Chromium is not installed (apt-get install -y chromium chromium-driver; `make test-host`)",
)
SHOTS = os.environ.get("BERTH_DASHBOARD_SCREENSHOTS", "")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1200,760"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _text(driver: Any, css: str) -> str:
    """The element's text; "" while the page is being replaced (a node of the old document, or none yet), so
    that a wait_for polling it tries again rather than failing on a page in the middle of a reload."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By

    try:
        return str(driver.find_element(By.CSS_SELECTOR, css).text)
    except WebDriverException:
        return ""


def _sign_in(driver: Any, server: BerthServer, token: tuple[str, str], target: str = "/apps") -> None:
    from selenium.webdriver.common.by import By

    driver.delete_all_cookies()
    driver.get(http_url(server) + target)
    assert "/login" in driver.current_url
    driver.find_element(By.ID, "token_id").send_keys(token[0])
    driver.find_element(By.ID, "token_secret").send_keys(token[1])
    driver.find_element(By.ID, "sign-in").click()


def _shot(driver: Any, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(SHOTS) / f"dashboard-{name}.png"))


def test_sign_in_is_enforced_in_the_browser(berth: BerthServer, browser: Any) -> None:
    driver = browser
    driver.delete_all_cookies()
    driver.get(f"{http_url(berth)}/containers")
    assert "/login?next=" in driver.current_url
    token = new_token(berth)
    _sign_in(driver, berth, (token[0], "not-the-secret"))
    assert "not valid" in _text(driver, "#login-error")
    _sign_in(driver, berth, token, "/containers")
    wait_for(lambda: driver.current_url.endswith("/containers"), "the page asked for after sign-in")
    assert _text(driver, "h1") == "Containers"
    assert berth_cli(berth, "token", "revoke", token[0]).returncode == 0
    driver.get(f"{http_url(berth)}/apps")
    assert "/login" in driver.current_url  # at once, with the same cookie


def test_view_run_at_lands_on_the_app_page_after_modal_run(berth: BerthServer, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    run = modal(berth, "run", "dashboard_app.py", "--name", "browser")
    assert run.returncode == 0, run.output
    found = re.search(r"View run at (\S+/apps/ap-\w+)", run.output)
    assert found, run.output
    driver = browser
    _sign_in(driver, berth, new_token(berth), urlpath(found.group(1)))
    wait_for(lambda: "/apps/ap-" in driver.current_url, "the app page after sign-in")
    assert driver.current_url == found.group(1)
    assert _text(driver, "#app-name") == "e2e-dashboard"
    functions = _text(driver, "#functions")
    assert "greet" in functions and "broken" in functions
    _shot(driver, "app")
    driver.find_element(By.LINK_TEXT, "greet").click()
    wait_for(lambda: "/functions/" in driver.current_url, "the function page")
    assert "succeeded" in _text(driver, "#inputs")
    _shot(driver, "function")
    driver.get(f"{http_url(berth)}/apps")
    assert found.group(1).rsplit("/", 1)[1] in _text(driver, "#apps")
    _shot(driver, "apps")
    driver.get(f"{http_url(berth)}/usage?hours=1")
    _shot(driver, "usage")


def urlpath(url: str) -> str:
    return "/" + url.split("/", 3)[3]


def test_live_logs_arrive_in_the_page_while_a_function_prints(berth: BerthServer, browser: Any) -> None:
    marker = f"live-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen(
        [str(BIN / "modal"), "run", "dashboard_app.py::ticker", "--marker", marker, "--count", "60"],
        cwd=APPS,
        env=berth.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        app_url = ""
        deadline = time.monotonic() + 120
        while not app_url and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            found = re.search(r"View run at (\S+/apps/ap-\w+)", line)
            app_url = found.group(1) if found else ""
        assert app_url, "modal run printed no 'View run at' URL"
        driver = browser
        _sign_in(driver, berth, new_token(berth), urlpath(app_url) + "/logs")
        wait_for(lambda: "/logs" in driver.current_url, "the logs page")
        wait_for(lambda: "following" in _text(driver, "#log-status"), "the live stream to open", timeout=30)
        at_load = _text(driver, "#log")
        ticks = [int(n) for n in re.findall(rf"{marker} tick (\d+)", at_load)]
        later = max(ticks, default=-1) + 3
        wait_for(lambda: f"{marker} tick {later}" in _text(driver, "#log"), f"tick {later} to arrive live", 60)
        _shot(driver, "logs")
    finally:
        proc.send_signal(signal.SIGINT)  # as Ctrl-C: the client stops its app
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


def test_the_rollback_button_rolls_a_deployed_app_back(berth: BerthServer, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    source = tmp_path / "dash_rollback.py"
    name = f"dash-rollback-{uuid.uuid4().hex[:6]}"
    url = ""
    for value in ("one", "two"):
        source.write_text(
            f"import modal\napp = modal.App({name!r})\n@app.function()\ndef which() -> str:\n    return {value!r}\n"
        )
        deployed = modal(berth, "deploy", str(source))
        assert deployed.returncode == 0, deployed.output
        found = re.search(r"(http\S+/apps/ap-\w+)", deployed.output)
        assert found, deployed.output
        url = found.group(1)
    driver = browser
    _sign_in(driver, berth, new_token(berth), urlpath(url))
    wait_for(lambda: driver.current_url == url, "the deployed app's page")
    driver.find_element(By.CSS_SELECTOR, "button.rollback[data-version='1']").click()
    wait_for(lambda: "v3" in _text(driver, "#deployments"), "a third deployment, the rollback")
    newest = driver.find_elements(By.CSS_SELECTOR, "#deployments tbody tr")[0].text
    assert newest.startswith("v3 live") and "v1" in newest, newest
    _shot(driver, "deployments")
    history = modal(berth, "app", "history", name)
    assert history.returncode == 0 and "v1" in history.output, history.output
    # The function answers as version 1 again.
    out = sdk(berth, f"import modal\nprint(modal.Function.from_name({name!r}, 'which').remote())")
    assert out.strip().splitlines()[-1] == "one"
