"""Functions that probe what an isolated container may reach: a listener that reports its address and
who connected to it, a web_server on the same app, and a prober that tries a list of host:port targets."""

import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import modal

app = modal.App("e2e-net-isolation")
LISTEN_PORT = 18741
WEB_PORT = 18742


@app.function()
def listen(q: modal.Queue, seconds: float) -> list[str]:
    """Listen on 0.0.0.0, put this container's address on `q`, and return the addresses of the peers
    that connected until the caller puts anything on the "stop" partition (or `seconds` pass)."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", LISTEN_PORT))
    srv.listen()
    srv.settimeout(0.5)
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.connect(("172.21.0.1", 9))  # no packet is sent: this only picks the outgoing address
    q.put(probe.getsockname()[0])
    peers: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            conn, peer = srv.accept()
            peers.append(peer[0])
            conn.close()
        except TimeoutError:
            if q.get(block=False, partition="stop") is not None:
                break
    # The caller connects, then says stop: a connection can still wait in the backlog. Take it too.
    srv.settimeout(0)
    while True:
        try:
            conn, peer = srv.accept()
        except BlockingIOError:
            break
        peers.append(peer[0])
        conn.close()
    return peers


@app.function()
@modal.web_server(WEB_PORT, startup_timeout=60)
def page() -> None:
    root = tempfile.mkdtemp()
    with open(f"{root}/hello.txt", "w") as f:
        f.write("hello from the web_server container\n")
    subprocess.Popen([sys.executable, "-m", "http.server", str(WEB_PORT), "--bind", "0.0.0.0", "--directory", root])


@app.function()
def probe(targets: list[tuple[str, int]], url: str) -> dict[str, str]:
    """Try a TCP connection to each target: connected, refused, timeout or the error's name; and fetch url."""
    out: dict[str, str] = {}
    for host, port in targets:
        started = time.monotonic()
        try:
            socket.create_connection((host, port), timeout=3).close()
            result = "connected"
        except ConnectionRefusedError:
            result = "refused"
        except TimeoutError:
            result = "timeout"
        except OSError as exc:
            result = type(exc).__name__
        out[f"{host}:{port}"] = result
        out[f"{host}:{port} seconds"] = f"{time.monotonic() - started:.2f}"
    try:
        with urllib.request.urlopen(url, timeout=60) as resp:
            out["web"] = resp.read().decode().strip()
    except OSError as exc:
        out["web"] = repr(exc)
    return out
