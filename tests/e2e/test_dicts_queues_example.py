"""The public modal-examples `09_job_queues/dicts_and_queues.py`, unmodified: it crawls a small static site
(tests/e2e/apps/static_site.py, a deployed web_server endpoint) through an ephemeral Dict and Queue shared by
spawned containers. Its code is read from a local mirror at a pinned commit into a scratch directory, never
copied into this repository.

The example's image installs beautifulsoup4. The process runtime runs containers on the server's own Python
and installs no image packages, so that variant skips unless that Python has bs4. On crun the image is built
with its packages, and the containers reach the site at its endpoint URL on 172.21.0.1, which their network
allows (other host ports are closed to them)."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import BerthServer, Run, modal, sdk

GIT_DIR = Path(os.environ.get("BERTH_EXAMPLES_GIT_DIR", "/work/.mirror/flower0wine+modal-examples/repo"))
COMMIT = "537ff5d"
EXAMPLE = "09_job_queues/dicts_and_queues.py"


def _wait_until_served(url: str, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=30) as resp:
                if resp.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.5)


@contextlib.contextmanager
def deployed_site(server: BerthServer) -> Iterator[str]:
    """The static site's URL, deployed on `server` for the duration."""
    deploy = modal(server, "deploy", "static_site.py", timeout=900)
    assert deploy.returncode == 0, deploy.output
    out = sdk(
        server,
        """
        import modal
        print(modal.Function.from_name("e2e-static-site", "site").get_web_url())
    """,
    )
    url = out.strip().splitlines()[-1].rstrip("/") + "/"
    try:
        _wait_until_served(url)  # the crawler's own requests give up after 10 s: start the site first
        yield url
    finally:
        modal(server, "app", "stop", "e2e-static-site", timeout=120)


def run_example(server: BerthServer, url: str, tmp_path: Path) -> Run:
    if not GIT_DIR.exists():
        pytest.skip(f"no modal-examples mirror at {GIT_DIR}")
    source = subprocess.run(["git", "--git-dir", str(GIT_DIR), "show", f"{COMMIT}:{EXAMPLE}"], capture_output=True)
    assert source.returncode == 0, source.stderr
    example = tmp_path / "dicts_and_queues.py"
    example.write_bytes(source.stdout)
    return modal(server, "run", str(example), "--starting-url", url, timeout=900)


def test_dicts_and_queues_example_crawls_a_site_on_the_host_on_the_process_runtime(
    berth: BerthServer, tmp_path: Path
) -> None:
    if os.environ.get("BERTH_E2E_RUNTIME", "process") != "process":
        pytest.skip("the shared server is not on the process runtime; the crun variant covers this")
    if importlib.util.find_spec("bs4") is None:
        pytest.skip("the process runtime installs no image packages and the server's Python lacks beautifulsoup4")
    with deployed_site(berth) as url:
        run = run_example(berth, url, tmp_path)
    assert run.returncode == 0, run.output
    assert "Crawled 6 URLs" in run.output
    assert "Failed to crawl" not in run.output


def test_dicts_and_queues_example_crawls_a_site_on_the_host_on_crun(berth_oci: BerthServer, tmp_path: Path) -> None:
    with deployed_site(berth_oci) as url:
        assert url.startswith("http://172.21.0.1:"), url
        run = run_example(berth_oci, url, tmp_path)
    assert run.returncode == 0, run.output
    assert "Crawled 6 URLs" in run.output
    assert "Failed to crawl" not in run.output
