"""The public modal-examples `09_job_queues/dicts_and_queues.py`, unmodified: it crawls a small static site
served on the host through an ephemeral Dict and Queue shared by spawned containers. Its code is read from a
local mirror at a pinned commit into a scratch directory, never copied into this repository.

The example's image installs beautifulsoup4. The process runtime runs containers on the server's own Python
and installs no image packages, so that variant skips unless that Python has bs4. On crun the image is built
with its packages, and the containers reach the host's site at 172.21.0.1, the host end of their network."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import subprocess
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.e2e.conftest import BerthServer, Run, modal

GIT_DIR = Path(os.environ.get("BERTH_EXAMPLES_GIT_DIR", "/work/.mirror/flower0wine+modal-examples/repo"))
COMMIT = "537ff5d"
EXAMPLE = "09_job_queues/dicts_and_queues.py"

# Six distinct URLs link to each other: /, /a.html, /b.html, /index.html, /sub/c.html, /sub/d.html.
SITE = {
    "index.html": '<a href="a.html">A</a> <a href="b.html">B</a> <a href="sub/c.html">C</a>',
    "a.html": '<a href="index.html">home</a> <a href="b.html">B</a>',
    "b.html": '<a href="a.html">A</a> <a href="sub/c.html">C</a>',
    "sub/c.html": '<a href="../index.html">home</a> <a href="d.html">D</a>',
    "sub/d.html": '<a href="c.html">C</a>',
}


@contextlib.contextmanager
def serve_site(tmp_path: Path, bind: str) -> Iterator[int]:
    root = tmp_path / "site"
    for name, body in SITE.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(f"<html><body>{body}</body></html>")
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(root))
    server = ThreadingHTTPServer((bind, 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


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
    with serve_site(tmp_path, "127.0.0.1") as port:
        run = run_example(berth, f"http://127.0.0.1:{port}/", tmp_path)
    assert run.returncode == 0, run.output
    assert "Crawled 6 URLs" in run.output
    assert "Failed to crawl" not in run.output


def test_dicts_and_queues_example_crawls_a_site_on_the_host_on_crun(berth_oci: BerthServer, tmp_path: Path) -> None:
    with serve_site(tmp_path, "0.0.0.0") as port:
        run = run_example(berth_oci, f"http://172.21.0.1:{port}/", tmp_path)
    assert run.returncode == 0, run.output
    assert "Crawled 6 URLs" in run.output
    assert "Failed to crawl" not in run.output
