"""@modal.web_server: the container runs its own HTTP server on a port, and requests to the endpoint's
URL are proxied to it from inside the container (over the same ASGI data channels)."""

from __future__ import annotations

import requests

from tests.e2e.conftest import BerthServer
from tests.e2e.webserve import Serve


def test_web_server_endpoint_proxies_to_the_port_inside_the_container(berth: BerthServer) -> None:
    serve = Serve(berth, "web_server_app.py")
    try:
        serve.wait_for("Serving...", timeout=1200)
        url = serve.urls["files"]
        resp = requests.get(f"{url}/hello.txt", timeout=120)
        assert resp.status_code == 200, resp.text
        assert resp.text.startswith("served by the container's own server")
        assert requests.get(f"{url}/no-such-file", timeout=120).status_code == 404
    finally:
        serve.stop()
