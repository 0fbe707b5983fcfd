"""Public modal-examples, unmodified, against Berth: the web endpoint and scheduling examples.
Their code is read from a local mirror of modal-examples at a pinned commit into a scratch directory
(never copied into this repository); the tests skip where the mirror is absent."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.e2e.conftest import BerthServer
from tests.e2e.webserve import Serve, crun_server

GIT_DIR = Path(os.environ.get("BERTH_EXAMPLES_GIT_DIR", "/work/.mirror/flower0wine+modal-examples/repo"))
COMMIT = "537ff5d"


def _example(root: Path, path: str) -> Path:
    if not GIT_DIR.exists():
        pytest.skip(f"no modal-examples mirror at {GIT_DIR}")
    out = subprocess.run(["git", "--git-dir", str(GIT_DIR), "show", f"{COMMIT}:{path}"], capture_output=True)
    if out.returncode != 0:
        pytest.skip(f"{path} not in the modal-examples mirror: {out.stderr.decode().strip()}")
    target = root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(out.stdout)
    return target


@pytest.fixture
def served(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Serve]:
    """`modal serve` of an example: param is its path, or (path, "crun") for isolated containers."""
    path, runtime = request.param if isinstance(request.param, tuple) else (request.param, "process")
    berth: BerthServer = request.getfixturevalue("berth") if runtime == "process" else crun_server(request)
    _example(tmp_path, path)
    serve = Serve(berth, path, cwd=tmp_path)
    try:
        serve.wait_for("Serving...", timeout=180)
        yield serve
    finally:
        serve.stop()


@pytest.mark.parametrize(
    "served", ["07_web_endpoints/basic_web.py", ("07_web_endpoints/basic_web.py", "crun")], indirect=True
)
def test_basic_web_example(served: Serve) -> None:
    urls = served.urls
    assert requests.get(urls["hello"], timeout=120).json() == "Hello world!"
    assert requests.get(urls["greet"], params={"user": "X"}, timeout=120).json() == "Hello X!"
    assert requests.post(urls["goodbye"], json={"name": "X"}, timeout=120).json() == "Goodbye X!"
    body = requests.get(urls["WebApp.web"], timeout=120).json()
    assert set(body) == {"start_time", "current_time"}
    assert requests.get(urls["expensive_secret"], timeout=120).status_code == 401


@pytest.mark.parametrize("served", ["07_web_endpoints/streaming.py"], indirect=True)
def test_streaming_example(served: Serve) -> None:
    arrivals: list[tuple[float, bytes]] = []
    with requests.get(served.urls["fastapi_app"], stream=True, timeout=120) as resp:
        for chunk in resp.iter_content(chunk_size=None):
            arrivals.append((time.monotonic(), chunk))
    text = b"".join(c for _, c in arrivals).decode()
    assert text == "".join(f"frame {i}: hello world!" for i in range(10))
    assert arrivals[-1][0] - arrivals[0][0] > 6, "the frames arrived all at once instead of streaming"
    mapped = requests.get(served.urls["mapped"], timeout=120).text
    assert mapped == "".join(f"hello from {i}\n" for i in range(10))


@pytest.mark.parametrize("served", ["07_web_endpoints/flask_app.py"], indirect=True)
def test_flask_example(served: Serve) -> None:
    assert requests.get(served.urls["flask_app"], timeout=120).text == "Hello Flask World!"
    assert requests.post(served.urls["flask_app"] + "/foo", json={"x": [1, 2]}, timeout=120).json() == {"x": [1, 2]}


def test_schedule_simple_example(berth: BerthServer, tmp_path: Path) -> None:
    _example(tmp_path, "05_scheduling/schedule_simple.py")
    proc = subprocess.run(
        [sys.executable, "-m", "05_scheduling.schedule_simple"],
        cwd=tmp_path,
        env=berth.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if "Printing with period 5 seconds: " in line]
    assert len(lines) >= 10, proc.stdout


@pytest.mark.parametrize("runtime", ["process", "crun"])
def test_streamlit_example(runtime: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if runtime == "process":
        # The process runtime runs containers on the server's own Python: streamlit must be installed there.
        pytest.importorskip("streamlit")
        berth: BerthServer = request.getfixturevalue("berth")
    else:
        # crun builds the example's image (streamlit from PyPI) and gives the container its own eth0.
        berth = crun_server(request)
    _example(tmp_path, "10_integrations/streamlit/app.py")
    path = "10_integrations/streamlit/serve_streamlit.py"
    _example(tmp_path, path)
    serve = Serve(berth, path, cwd=tmp_path)
    try:
        serve.wait_for("Serving...", timeout=1200)
        resp = requests.get(serve.urls["run"], timeout=300)
        assert resp.status_code == 200
        assert "<title>Streamlit</title>" in resp.text
    finally:
        serve.stop()
