"""Proxies through the stock client: `berth proxy create NAME --source-ip ADDR`, then a function (or a sandbox) with
`proxy=modal.Proxy.from_name(NAME)` reaches a server (in a network namespace this test makes) from ADDR, while one
without a proxy reaches it from the host's own address; an unknown proxy is NotFound."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import BIN, BerthServer, call_remote, sdk, start_server, stop_server, wait_for

# TEST-NET-2 (RFC 5737): not a private network, so containers may reach it; nothing real lives there.
HOST_ADDR, SOURCE_ADDR, SERVER_ADDR, PORT = "198.51.100.1", "198.51.100.7", "198.51.100.2", 18833
SERVER = """
import socket
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", PORT)); srv.listen()
while True:
    conn, peer = srv.accept(); conn.sendall(peer[0].encode()); conn.close()
"""


@pytest.fixture(scope="module")
def berth_crun(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BerthServer]:
    if os.geteuid() != 0:
        pytest.skip("proxies need the crun runtime (network namespaces), which needs root")
    server = start_server(tmp_path_factory.mktemp("berth-proxies") / "data", extra_args=["--runtime", "crun"])
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def target() -> Iterator[str]:
    """A TCP server in a network namespace of its own, on a veth whose host end also owns the proxy's address;
    it answers each connection with the address it came from."""
    ns, veth = f"bpx-{os.getpid()}", f"bpx{os.getpid() % 100000}"
    host = [
        f"netns add {ns}",
        f"link add {veth} type veth peer name eth0 netns {ns}",
        f"addr add {HOST_ADDR}/24 dev {veth}",
        f"addr add {SOURCE_ADDR}/32 dev {veth}",
        f"link set {veth} up",
    ]
    inside = [f"addr add {SERVER_ADDR}/24 dev eth0", "link set eth0 up", "link set lo up"]
    proc = None
    try:
        for argv, script in ((["ip"], host), (["ip", "-n", ns], inside)):
            batch = "\n".join(script) + "\n"
            done = subprocess.run([*argv, "-batch", "-"], input=batch, text=True, capture_output=True)
            assert done.returncode == 0, done.stderr
        code = textwrap.dedent(SERVER).replace("PORT", str(PORT))
        proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", code])
        wait_for(
            lambda: subprocess.run(
                ["ip", "netns", "exec", ns, "ss", "-ltn", f"sport = :{PORT}"], capture_output=True, text=True
            ).stdout.count("LISTEN"),
            "the target server to listen",
        )
        yield SERVER_ADDR
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", veth], capture_output=True)


def _berth(server: BerthServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BIN / "berth", *args, "--data-dir", str(server.data_dir)], capture_output=True, text=True, timeout=60
    )


def test_function_with_a_proxy_connects_from_the_proxys_address(berth_crun: BerthServer, target: str) -> None:
    made = _berth(berth_crun, "proxy", "create", "e2e-px", "--source-ip", SOURCE_ADDR)
    assert made.returncode == 0, made.stderr
    assert "e2e-px" in _berth(berth_crun, "proxy", "list").stdout
    assert call_remote(berth_crun, "proxied", "via_proxy", target, PORT) == SOURCE_ADDR
    assert call_remote(berth_crun, "proxied", "direct", target, PORT) == HOST_ADDR


def test_sandbox_with_a_proxy_connects_from_the_proxys_address(berth_crun: BerthServer, target: str) -> None:
    _berth(berth_crun, "proxy", "create", "e2e-px-sb", "--source-ip", SOURCE_ADDR)
    probe = (
        f"import socket; c = socket.create_connection(({target!r}, {PORT}), timeout=10); print(c.recv(100).decode())"
    )
    out = sdk(
        berth_crun,
        f"""
        import modal
        app = modal.App.lookup("e2e-proxied-sandbox", create_if_missing=True)
        sb = modal.Sandbox.create(
            "python3", "-c", {probe!r}, app=app, proxy=modal.Proxy.from_name("e2e-px-sb")
        )
        sb.wait()
        print("SEEN=" + sb.stdout.read().strip())
        """,
    )
    assert f"SEEN={SOURCE_ADDR}" in out


def test_proxy_source_address_is_checked_and_names_are_unique(berth_crun: BerthServer) -> None:
    bad = _berth(berth_crun, "proxy", "create", "e2e-bad", "--source-ip", "not-an-ip")
    assert bad.returncode == 1 and "must be an IPv4 address" in bad.stderr
    _berth(berth_crun, "proxy", "create", "e2e-twice", "--source-ip", SOURCE_ADDR)
    again = _berth(berth_crun, "proxy", "create", "e2e-twice", "--source-ip", SOURCE_ADDR)
    assert again.returncode == 1 and "already exists" in again.stderr
    assert _berth(berth_crun, "proxy", "delete", "e2e-twice").returncode == 0
    assert "e2e-twice" not in _berth(berth_crun, "proxy", "list").stdout


def test_unknown_proxy_is_not_found(berth_crun: BerthServer) -> None:
    out = sdk(
        berth_crun,
        """
        import sys; sys.path.insert(0, ".")
        import modal
        from proxied import missing
        try:
            with missing.run():
                pass
        except modal.exception.NotFoundError as exc:
            print("NotFound:", exc)
        """,
    )
    assert "NotFound: Proxy 'no-such-proxy' not found in environment 'main'" in out
