"""Network isolation on crun: a container reaches its own server's API, HTTP side and web endpoints
and the internet through NAT, but not other ports on the host, not another container, and not private
networks; each server's firewall chain goes away with it, even after kill -9."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from berth.worker.network import server_chain
from tests.e2e.conftest import BerthServer, python, start_server, stop_server

HOST_IP = "172.21.0.1"


@pytest.fixture
def host_listener() -> Iterator[int]:
    """A plain TCP server on every host address, like a database the containers must not reach."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", 0))
    srv.listen()
    try:
        yield int(srv.getsockname()[1])
    finally:
        srv.close()


def _host_addresses() -> list[str]:
    """The host's own global IPv4 addresses other than the bridge's (eth0's, say)."""
    out = subprocess.run(["ip", "-o", "-4", "addr", "show", "scope", "global"], capture_output=True, text=True).stdout
    found = []
    for line in out.splitlines():
        fields = line.split()
        addr = str(ipaddress.ip_interface(fields[3]).ip)
        if fields[1] != "berth0":
            found.append(addr)
    return found[:1]


PROBE = """
import json, sys
sys.path.insert(0, '.')
import modal
from net_isolation import app, listen, page, probe
targets = [tuple(t) for t in json.loads(sys.argv[1])]
with app.run(), modal.Queue.ephemeral() as q:
    listener = listen.spawn(q, 240)
    peer_ip = q.get(timeout=240)
    seen = probe.remote(targets + [(peer_ip, 18741)], page.get_web_url() + "/hello.txt")
    # The host itself may still reach a container (the web_server proxy does): proof the listener listens.
    import socket
    socket.create_connection((peer_ip, 18741), timeout=10).close()
    q.put("stop", partition="stop")
    print(json.dumps({"seen": seen, "peer_ip": peer_ip, "peers": listener.get(timeout=120)}))
"""


def test_container_reaches_its_server_and_the_internet_but_not_the_host_or_other_containers(
    berth_oci: BerthServer, host_listener: int
) -> None:
    port = berth_oci.port
    closed = [(HOST_IP, host_listener)] + [(addr, host_listener) for addr in _host_addresses()]
    private = [("169.254.169.254", 80), ("192.168.255.254", 80)]
    opened = [(HOST_IP, port), (HOST_IP, port + 1), ("pypi.org", 443)]
    run = python(berth_oci, "-c", PROBE, json.dumps(closed + private + opened), timeout=600)
    assert run.returncode == 0, run.output
    out = json.loads(run.stdout.strip().splitlines()[-1])
    seen, peer_ip = out["seen"], out["peer_ip"]
    for host, p in closed + private:
        # Rejected, not dropped: the caller fails at once.
        assert seen[f"{host}:{p}"] == "refused", (host, p, seen)
        assert float(seen[f"{host}:{p} seconds"]) < 2, seen
    for host, p in opened:
        assert seen[f"{host}:{p}"] == "connected", (host, p, seen)
    assert seen["web"] == "hello from the web_server container", seen  # a web endpoint of the same server
    # The other container listened (the host got through), but the prober's connection never arrived.
    assert seen[f"{peer_ip}:18741"] != "connected", seen
    assert out["peers"] == [HOST_IP], out


def _chains() -> str:
    return subprocess.run(["iptables", "-S"], capture_output=True, text=True, check=True).stdout


def test_each_server_removes_its_firewall_chain_and_a_killed_servers_chain_is_collected(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the crun runtime needs root")
    data = tmp_path / "data"
    first = start_server(data, extra_args=["--runtime", "crun"])
    first_chain = server_chain(data, first.port)
    assert f"-A BERTH-PORTS -j {first_chain}" in _chains()
    assert f"-A {first_chain} -d {HOST_IP}/32 -p tcp -m multiport --dports {first.port},{first.port + 1}" in _chains()
    first.proc.kill()
    first.proc.wait(timeout=30)
    assert first_chain in _chains()  # kill -9 leaves it behind
    second = start_server(data, extra_args=["--runtime", "crun"])
    second_chain = server_chain(data, second.port)
    try:
        rules = _chains()
        assert first_chain not in rules  # the next server collected it
        assert f"-A BERTH-PORTS -j {second_chain}" in rules
        assert rules.count(f"-A BERTH-PORTS -j {second_chain}") == 1
    finally:
        assert stop_server(second) == 0
    assert second_chain not in _chains()
