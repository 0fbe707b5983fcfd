"""Container networking: one bridge on the host (berth0, 172.21.0.1/16, NAT to the outside) and one
network namespace per container, joined to the bridge by a veth pair.

The host end of the bridge is the address containers use to reach the server (DESIGN.md: the modal
client allows plain http to 172.21.0.1). The bridge and its NAT rule are host state shared by every
Berth server on the machine, like docker0; per-container namespaces and veths are removed on exit."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

BRIDGE = "berth0"
HOST_IP = "172.21.0.1"
SUBNET = ipaddress.ip_network("172.21.0.0/16")
NETNS_DIR = Path("/var/run/netns")
_LEASES = Path("/run/berth/net")
_LEASE_GRACE_S = 60.0


class NetworkError(OSError):
    pass


def _run(argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)


def nat_rule() -> list[str]:
    return ["POSTROUTING", "-t", "nat", "-s", str(SUBNET), "!", "-o", BRIDGE, "-j", "MASQUERADE"]


def bridge_ready() -> bool:
    out = _run(["ip", "-o", "-4", "addr", "show", "dev", BRIDGE])
    return out.returncode == 0 and f"{HOST_IP}/" in out.stdout


def ensure_bridge() -> None:
    """Create the bridge, its address, forwarding and the NAT rule if they are missing (idempotent)."""
    if _run(["ip", "link", "show", BRIDGE]).returncode != 0:
        made = _run(["ip", "link", "add", BRIDGE, "type", "bridge"])
        if made.returncode != 0 and "exists" not in made.stderr:
            raise NetworkError(f"cannot create bridge {BRIDGE}: {made.stderr.strip()}")
    if not bridge_ready():
        added = _run(["ip", "addr", "add", f"{HOST_IP}/{SUBNET.prefixlen}", "dev", BRIDGE])
        if added.returncode != 0 and "exists" not in added.stderr:
            raise NetworkError(f"cannot address bridge {BRIDGE}: {added.stderr.strip()}")
    _run(["ip", "link", "set", BRIDGE, "up"])
    with contextlib.suppress(OSError):
        Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
    rule = nat_rule()
    if _run(["iptables", "-C", *rule]).returncode != 0:
        added = _run(["iptables", "-A", *rule])
        if added.returncode != 0:
            raise NetworkError(f"cannot add the NAT rule for {SUBNET}: {added.stderr.strip()}")


def names_for(container_id: str) -> tuple[str, str]:
    """(netns name, host veth name); interface names are limited to 15 characters."""
    digest = hashlib.sha256(container_id.encode()).hexdigest()[:12]
    return f"berth-{container_id}", f"bv{digest}"


@dataclass(frozen=True)
class ContainerNet:
    netns: str
    host_veth: str
    address: str

    @property
    def netns_path(self) -> str:
        return str(NETNS_DIR / self.netns)


def _stale(lease: Path) -> bool:
    """A lease whose namespace is gone, and old enough that its owner is not still creating it."""
    try:
        owner = lease.read_text().strip()
        age = time.time() - lease.stat().st_mtime
    except OSError:
        return False
    return bool(owner) and age > _LEASE_GRACE_S and not (NETNS_DIR / owner).exists()


def _lease_address(netns: str) -> str:
    """Reserve a free address across every process on the machine: one O_EXCL file per address."""
    _LEASES.mkdir(parents=True, exist_ok=True)
    hosts = SUBNET.hosts()
    next(hosts)  # .0.1 is the host
    for addr in hosts:
        lease = _LEASES / str(addr)
        try:
            fd = os.open(lease, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            if _stale(lease):
                lease.unlink(missing_ok=True)  # its namespace is gone: reuse the address
                return _lease_address(netns)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(netns)
        return str(addr)
    raise NetworkError(f"no free address left in {SUBNET}")


def _setup(container_id: str) -> ContainerNet:
    netns, veth = names_for(container_id)
    address = _lease_address(netns)
    net = ContainerNet(netns, veth, address)
    host_cmds = "\n".join(
        [
            f"netns add {netns}",
            f"link add {veth} type veth peer name eth0 netns {netns}",
            f"link set {veth} master {BRIDGE} up",
        ]
    )
    ns_cmds = "\n".join(
        [
            f"addr add {address}/{SUBNET.prefixlen} dev eth0",
            "link set eth0 up",
            "link set lo up",
            f"route add default via {HOST_IP}",
        ]
    )
    for argv, script in ((["ip", "-batch", "-"], host_cmds), (["ip", "-n", netns, "-batch", "-"], ns_cmds)):
        out = _run(argv, script + "\n")
        if out.returncode != 0:
            _teardown(net)
            raise NetworkError(f"cannot set up the network of {container_id}: {out.stderr.strip()}")
    return net


def _teardown(net: ContainerNet) -> None:
    _run(["ip", "link", "del", net.host_veth])
    _run(["ip", "netns", "del", net.netns])
    (_LEASES / net.address).unlink(missing_ok=True)


async def setup(container_id: str) -> ContainerNet:
    return await asyncio.to_thread(_setup, container_id)


async def teardown(net: ContainerNet) -> None:
    await asyncio.to_thread(_teardown, net)
