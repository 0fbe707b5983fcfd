"""The web front door under hostile HTTP, sent over raw sockets: request smuggling (Content-Length with
Transfer-Encoding, duplicate Content-Length, obfuscated Transfer-Encoding), CR/LF in headers on the way in and
out, oversized header blocks (431) and bodies (413). Each is refused on its own connection, reaches the app
never or once, and the server goes on serving."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import BerthServer, modal, start_server, stop_server
from tests.reliability.record import note

MAX_BODY = 1024 * 1024


@pytest.fixture(scope="module")
def door(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BerthServer, int]]:
    server = start_server(
        tmp_path_factory.mktemp("front-door") / "data", extra_env={"BERTH_WEB_MAX_BODY_BYTES": str(MAX_BODY)}
    )
    try:
        deployed = modal(server, "deploy", "front_door.py")
        assert deployed.returncode == 0, deployed.output
        port = int(re.findall(r"http://127\.0\.0\.1:(\d+)", deployed.stdout)[0])
        yield server, port
    finally:
        stop_server(server)


def raw(port: int, data: bytes, timeout: float = 60) -> bytes:
    """Send bytes on a fresh connection; everything the server answers until it closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def get(path: str, *headers: bytes) -> bytes:
    return (
        b"GET "
        + path.encode()
        + b" HTTP/1.1\r\nHost: x\r\n"
        + b"".join(h + b"\r\n" for h in headers)
        + (b"Connection: close\r\n\r\n")
    )


def served(port: int, path: str = "/ok") -> dict[str, object]:
    answer = raw(port, get(path))
    assert status(answer) == 200, answer[:300]
    return dict(json.loads(answer.split(b"\r\n\r\n", 1)[1].split(b"\r\n")[1]))  # one chunk of JSON


SMUGGLING = {
    "Content-Length and Transfer-Encoding": b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    "Transfer-Encoding and Content-Length 0": b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
    b"Content-Length: 0\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    "duplicate Content-Length": b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\n"
    b"abcdGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    "obfuscated Transfer-Encoding": b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n"
    b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    "space before the colon": b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\nContent-Length: 4"
    b"\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    "bare LF inside a header": get("/a", b"X-A: a\nTransfer-Encoding: chunked"),
    "bare CR inside a header": get("/a", b"X-A: a\rX-Injected: 1"),
}


@pytest.mark.parametrize("attack", list(SMUGGLING))
def test_ambiguous_framing_is_refused_and_nothing_is_smuggled(door: tuple[BerthServer, int], attack: str) -> None:
    _, port = door
    answer = raw(port, SMUGGLING[attack])
    assert status(answer) == 400, answer[:300]
    assert answer.count(b"HTTP/1.") == 1, f"a second request was answered on the connection: {answer!r}"
    assert served(port)["path"] == "/ok"
    note(
        f"front door: {attack}", faults=1, outputs_checked=1, errors=0, outcome="400, nothing smuggled, server serving"
    )


def test_a_response_header_with_cr_lf_from_the_app_gets_502_not_a_split_response(
    door: tuple[BerthServer, int],
) -> None:
    server, port = door
    injected = b"a\r\nSet-Cookie: pwned=1"
    answer = raw(port, get("/inject?hex=" + injected.hex()))
    head = answer.split(b"\r\n\r\n", 1)[0]
    assert status(answer) == 502, answer[:400]
    assert b"pwned" not in answer
    assert b"Set-Cookie" not in head
    # A value that only looks odd passes through unchanged.
    answer = raw(port, get("/inject?hex=" + b"plain; value=1".hex()))
    assert status(answer) == 200 and b"x-reflected: plain; value=1" in answer.lower()
    assert "answered 502" in server.log()
    note(
        "front door: CR/LF in a response header from the app",
        faults=1,
        outputs_checked=2,
        errors=0,
        outcome="502, no injected header; a plain value passes",
    )


@pytest.mark.parametrize(
    "what,request_bytes",
    [
        ("one header over 8 KiB", get("/a", b"X-Big: " + b"a" * 20_000)),
        ("too many headers", get("/a", *[b"X-%d: v" % i for i in range(500)])),
        ("a request line over 8 KiB", get("/" + "a" * 20_000)),
    ],
)
def test_an_oversized_header_block_gets_431(door: tuple[BerthServer, int], what: str, request_bytes: bytes) -> None:
    _, port = door
    answer = raw(port, request_bytes)
    assert status(answer) == 431, (what, answer[:300])
    assert b"Request Header Fields Too Large" in answer
    assert served(port)["path"] == "/ok"
    note(f"front door: {what}", faults=1, outputs_checked=1, errors=0, outcome="431, server serving")


def test_a_body_over_the_limit_gets_413_whether_announced_or_chunked(door: tuple[BerthServer, int]) -> None:
    _, port = door
    announced = raw(
        port, b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nConnection: close\r\n\r\nabc" % (MAX_BODY + 1)
    )
    assert status(announced) == 413 and b"at most %d bytes" % MAX_BODY in announced, announced[:300]
    chunk = b"x" * 65536
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(MAX_BODY // len(chunk) + 2)) + b"0\r\n\r\n"
    chunked = raw(
        port, b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + body
    )
    assert status(chunked) == 413, chunked[:300]
    # Under the limit, a body still reaches the app whole.
    small = b"y" * (MAX_BODY - 10)
    answer = raw(
        port, b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(small) + small
    )
    assert status(answer) == 200 and b'"body_bytes": %d' % len(small) in answer, answer[:300]
    note(
        "front door: bodies over the limit",
        faults=2,
        outputs_checked=3,
        errors=0,
        outcome="413 announced and chunked; a body under the limit arrives whole",
    )


def test_headers_reach_the_app_as_sent_without_the_proxy_auth_pair(door: tuple[BerthServer, int]) -> None:
    _, port = door
    seen = served(port, "/h")
    assert ["host", "x"] in seen["headers"]  # type: ignore[operator]
