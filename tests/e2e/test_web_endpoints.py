"""Web endpoints served by `modal serve`, reached with real HTTP requests: every endpoint kind,
streaming, websockets, bodies of any size, concurrency, proxy auth, errors and disconnects."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator

import aiohttp
import pytest
import requests

from tests.e2e.conftest import BIN, BerthServer, modal
from tests.e2e.webserve import Serve

ENDPOINTS = ("hello", "greet", "echo_json", "labelled", "fetch", "boom", "guarded", "pid", "api", "flask_app")


@pytest.fixture(scope="module")
def served(berth: BerthServer) -> Iterator[Serve]:
    serve = Serve(berth, "web_app.py")
    try:
        serve.wait_for("Serving...", timeout=1200)
        missing = [name for name in (*ENDPOINTS, "Greeter.web") if name not in serve.urls]
        assert not missing, f"no URL printed for {missing}:\n{serve.output}"
        yield serve
    finally:
        serve.stop()


def test_serve_prints_one_url_per_endpoint_and_marks_proxy_auth(served: Serve) -> None:
    assert len(set(served.urls.values())) == len(served.urls)
    guarded_line = next(line for line in served.lines if served.urls["guarded"] in line)
    assert "🔑" in guarded_line
    hello_line = next(line for line in served.lines if served.urls["hello"] in line)
    assert "(unauthenticated)" in hello_line


def test_fastapi_endpoint_get_with_query_and_docs(served: Serve) -> None:
    assert requests.get(served.urls["hello"], timeout=120).json() == "Hello world!"
    assert requests.get(served.urls["greet"], params={"user": "X"}, timeout=120).json() == "Hello X!"
    docs = requests.get(served.urls["hello"] + "/docs", timeout=120)
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_fastapi_endpoint_post_json(served: Serve) -> None:
    resp = requests.post(served.urls["echo_json"], json={"name": "X", "n": [1, 2]}, timeout=120)
    assert resp.status_code == 200 and resp.json() == {"name": "X", "n": [1, 2]}


def test_class_endpoint_runs_enter_once_per_container(served: Serve) -> None:
    first = requests.get(served.urls["Greeter.web"], timeout=120).json()
    second = requests.get(served.urls["Greeter.web"], timeout=120).json()
    assert first["started"] == second["started"] and second["now"] > first["now"]


def test_custom_label_is_in_the_url_key_and_get_web_url_returns_it(served: Serve) -> None:
    body = requests.get(served.urls["labelled"], timeout=120).json()
    assert body == {"own_url": served.urls["labelled"]}


def test_url_works_from_inside_a_container(served: Serve) -> None:
    body = requests.get(served.urls["fetch"], params={"url": served.urls["greet"] + "?user=inside"}, timeout=120)
    assert body.json() == {"status": 200, "body": '"Hello inside!"'}


def test_wsgi_flask_app(served: Serve) -> None:
    assert requests.get(served.urls["flask_app"], timeout=120).text == "Hello Flask World!"
    resp = requests.post(served.urls["flask_app"] + "/foo", json={"a": 1}, timeout=120)
    assert resp.json() == {"a": 1}


def test_unknown_path_of_an_app_is_its_own_404(served: Serve) -> None:
    assert requests.get(served.urls["api"] + "/no-such-route", timeout=120).status_code == 404


def test_handler_that_raises_gets_500_without_the_traceback_which_goes_to_the_logs(served: Serve) -> None:
    resp = requests.get(served.urls["boom"], timeout=120)
    assert resp.status_code == 500
    assert "kaboom" not in resp.text and "Traceback" not in resp.text
    served.wait_for("kaboom: secret detail from the handler", timeout=60)
    assert "Traceback" in served.output


def test_proxy_auth_refuses_missing_and_wrong_tokens_and_accepts_a_valid_one(berth: BerthServer, served: Serve) -> None:
    url = served.urls["guarded"]
    assert requests.get(url, timeout=120).status_code == 401
    assert (
        requests.get(url, headers={"Modal-Key": "wk-nope", "Modal-Secret": "ws-nope"}, timeout=120).status_code == 401
    )
    created = subprocess.run(
        [BIN / "berth", "web-token", "create", "--data-dir", berth.data_dir], capture_output=True, text=True, check=True
    ).stdout
    fields = dict(line.split(": ", 1) for line in created.strip().splitlines())
    headers = {"Modal-Key": fields["Modal-Key"], "Modal-Secret": fields["Modal-Secret"]}
    ok = requests.get(url, headers=headers, timeout=120)
    assert ok.status_code == 200 and ok.json() == "guarded ok"
    listed = subprocess.run(
        [BIN / "berth", "web-token", "list", "--data-dir", berth.data_dir], capture_output=True, text=True, check=True
    ).stdout
    assert fields["Modal-Key"] in listed and fields["Modal-Secret"] not in listed
    subprocess.run(
        [BIN / "berth", "web-token", "revoke", fields["Modal-Key"], "--data-dir", berth.data_dir], check=True
    )
    assert requests.get(url, headers=headers, timeout=120).status_code == 401


@pytest.mark.parametrize("size", [0, 3 * 1024 * 1024 + 17, 40 * 1024 * 1024])
def test_request_body_of_any_size_reaches_the_app(served: Serve, size: int) -> None:
    body = os.urandom(size)
    resp = requests.post(served.urls["api"] + "/digest", data=body, timeout=300)
    assert resp.json() == {"bytes": size, "sha256": hashlib.sha256(body).hexdigest()}


def test_slow_upload_reaches_the_app_as_it_arrives(served: Serve) -> None:
    # The app must see the first bytes within Modal's 5 s first-message window, long before the body ends.
    def body() -> Iterator[bytes]:
        yield b"a" * 10
        time.sleep(8)
        yield b"b" * 10

    resp = requests.post(served.urls["api"] + "/digest", data=body(), timeout=120)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"bytes": 20, "sha256": hashlib.sha256(b"a" * 10 + b"b" * 10).hexdigest()}


@pytest.mark.parametrize("size", [256, 5 * 1024 * 1024, 60 * 1024 * 1024])
def test_response_body_of_any_size_reaches_the_client(served: Serve, size: int) -> None:
    resp = requests.get(served.urls["api"] + "/big", params={"n": size}, timeout=300)
    assert resp.status_code == 200
    assert resp.content == bytes(i % 251 for i in range(256)) * (size // 256)


def test_server_sent_events_arrive_one_by_one(served: Serve) -> None:
    arrivals: list[float] = []
    with requests.get(served.urls["api"] + "/sse", stream=True, timeout=120) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        for line in resp.iter_lines():
            if line.startswith(b"data: "):
                arrivals.append(time.time())
    assert len(arrivals) == 5
    # Streamed, not buffered: the events did not all arrive at once at the end.
    assert arrivals[-1] - arrivals[0] > 1.0


def test_websocket_round_trips_and_closes(served: Serve) -> None:
    url = served.urls["api"].replace("http://", "ws://") + "/ws"

    async def talk() -> list[str]:
        async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
            got = []
            for word in ("one", "two"):
                await ws.send_str(word)
                got.append((await ws.receive(timeout=60)).data)
            await ws.send_str("bye")
            closing = await ws.receive(timeout=60)
            got.append(f"closed {closing.type.name}")
            return got

    assert asyncio.run(talk()) == ["echo: one", "echo: two", "closed CLOSE"]


def test_concurrent_inputs_share_one_container(served: Serve) -> None:
    results: list[dict] = []

    def one() -> None:
        results.append(requests.get(served.urls["api"] + "/overlap", timeout=120).json())

    requests.get(served.urls["api"] + "/big", params={"n": 256}, timeout=120)  # warm one container
    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4
    assert len({r["pid"] for r in results}) == 1
    assert max(r["start"] for r in results) < min(r["end"] for r in results)


def test_client_disconnect_mid_stream_cancels_the_input(served: Serve) -> None:
    tag = f"t{time.time_ns()}"
    with requests.get(served.urls["api"] + "/endless", params={"tag": tag}, stream=True, timeout=120) as resp:
        lines = resp.iter_lines()
        assert next(lines).startswith(b"tick")
    served.wait_for(f"endless stream {tag} stopped", timeout=60)


def test_endpoint_scales_up_from_zero_and_down_after_its_window(served: Serve) -> None:
    first = requests.get(served.urls["pid"], timeout=120).json()
    assert requests.get(served.urls["pid"], timeout=120).json() == first
    time.sleep(15)  # scaledown_window=2, then the idle container drains and exits
    assert requests.get(served.urls["pid"], timeout=120).json() != first


def test_modal_container_list_shows_the_containers_serving_the_app(berth: BerthServer, served: Serve) -> None:
    requests.get(served.urls["Greeter.web"], timeout=120).raise_for_status()
    app_id = re.search(r"/apps/(ap-\w+)", served.output).group(1)  # type: ignore[union-attr]
    listed = modal(berth, "container", "list", "--app-id", app_id, "--json", timeout=120)
    assert listed.returncode == 0, listed.output
    rows = json.loads(listed.stdout)
    assert rows and {row["app_id"] for row in rows} == {app_id}
    assert all(row["container_id"].startswith("ta-") for row in rows)


def test_modal_container_stop_ends_a_container_and_the_endpoint_starts_another(
    berth: BerthServer, served: Serve
) -> None:
    assert requests.get(served.urls["hello"], timeout=120).status_code == 200  # its container idles for 60 s
    app_id = re.search(r"/apps/(ap-\w+)", served.output).group(1)  # type: ignore[union-attr]

    def listed() -> set[str]:
        run = modal(berth, "container", "list", "--app-id", app_id, "--json", timeout=120)
        return {row["container_id"] for row in json.loads(run.stdout)}

    victim = ""
    for candidate in sorted(listed()):  # some may drain on their own meanwhile (pid's window is 2 s)
        stopped = modal(berth, "container", "stop", candidate, "--yes", timeout=120)
        if stopped.returncode == 0:
            victim = candidate
            break
        assert "is already stopped" in stopped.output, stopped.output
    assert victim, "no container could be stopped"
    for _ in range(100):
        if victim not in listed():
            break
        time.sleep(0.3)
    else:
        raise AssertionError(f"{victim} still listed after modal container stop")
    again = modal(berth, "container", "stop", victim, "--yes", timeout=120)
    assert again.returncode != 0 and f"Container '{victim}' is already stopped" in again.output, again.output
    missing = modal(berth, "container", "stop", "ta-doesnotexist", "--yes", timeout=120)
    assert missing.returncode != 0 and "not found" in missing.output.lower(), missing.output
    assert requests.get(served.urls["hello"], timeout=120).status_code == 200  # the app still serves


def test_served_urls_print_as_json_clean(served: Serve) -> None:
    # Every URL is a plain http URL on the container-reachable host, with no path.
    for url in served.urls.values():
        assert url.startswith("http://") and url.count("/") == 2, json.dumps(served.urls)
