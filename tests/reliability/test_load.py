"""Load on a real `berth up`, small and seeded for CI (tests/reliability/load.py; `make reliability` runs the
full size): no request fails, and the server's memory and open fds come back to where they were."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import BerthServer, start_server, stop_server
from tests.reliability import load

SIZES = load.FULL if os.environ.get("BERTH_LOAD_FULL") else load.CI
pytestmark = pytest.mark.timeout(1800)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BerthServer]:
    s = start_server(tmp_path_factory.mktemp("load") / "data")
    yield s
    stop_server(s)


@pytest.fixture(scope="module")
def web_url(server: BerthServer) -> str:
    return load.deploy_web(server)


def check(figures: load.Figures) -> None:
    assert figures.errors == [], figures.errors[:10]
    assert figures.before is not None and figures.after is not None
    assert figures.after.fds <= figures.before.fds + 10, f"fds {figures.before.fds} → {figures.after.fds}"
    assert figures.after.rss_mib <= figures.before.rss_mib + 150, f"RSS {figures.before} → {figures.after}"


def test_concurrent_web_requests_all_succeed(server: BerthServer, web_url: str) -> None:
    figures = load.web_burst(server, web_url, SIZES.web_requests)
    check(figures)
    assert len(figures.latencies) == SIZES.web_requests


def test_concurrent_remote_callers_all_get_their_result(server: BerthServer) -> None:
    figures = load.remote_callers(server, SIZES.remote_callers)
    check(figures)
    assert len(figures.latencies) == SIZES.remote_callers


def test_apps_deployed_and_stopped_in_a_loop(server: BerthServer) -> None:
    check(load.deploy_loop(server, SIZES.deploys))


def test_slow_clients_do_not_starve_others_and_let_go_when_they_leave(server: BerthServer, web_url: str) -> None:
    figures = load.slowloris(server, web_url, SIZES.slow_clients, SIZES.hold_s)
    check(figures)
    assert figures.latencies and max(figures.latencies) < 10, figures.latencies
