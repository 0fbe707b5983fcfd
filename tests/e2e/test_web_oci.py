"""Web endpoints on the crun runtime: URLs on the containers' host address work from the host and
from inside another isolated container."""

from __future__ import annotations

import pytest
import requests

from tests.e2e.webserve import Serve, crun_server


def test_endpoint_url_works_from_the_host_and_from_an_isolated_container(request: pytest.FixtureRequest) -> None:
    serve = Serve(crun_server(request), "web_oci.py")
    try:
        serve.wait_for("Serving...", timeout=1200)
        hello = serve.urls["hello"]
        assert requests.get(hello, timeout=300).json() == "Hello from an isolated container"
        inside = requests.get(serve.urls["fetch"], params={"url": hello}, timeout=300).json()
        assert inside == {"status": 200, "body": '"Hello from an isolated container"'}
    finally:
        serve.stop()
