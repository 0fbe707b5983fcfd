"""The private link of one gang-scheduled cluster (`@modal.clustered`): a bridge on the host per cluster, with no
address of its own, and one more interface (`i6pn0`) in each member's network namespace, addressed from
`berth.domain.cluster` (IPv6 and IPv4). Members reach each other over it directly; the host, other clusters and
other containers are not on it (their only link is berth0, whose ports are isolated). `i6pn.modal.local`
names the member's own IPv6 address, as the modal client expects.

The bridge is shared by the cluster's members on this worker: the first to join creates it and the last to
leave removes it, under one lock file per cluster.

A cluster spread over several workers (ClusterSpec.peers: the other workers' addresses) has its bridges joined
by a VXLAN of its own (its VNI from the cluster id, UDP port VXLAN_PORT): one more port on each worker's bridge,
with one flood entry per peer worker, so frames for members elsewhere (and broadcasts, ARP and neighbour
discovery) are tunnelled to those workers and to no other. The members' link then has the VXLAN's MTU (the
underlay's less its 50 bytes of headers), so nothing they send needs fragmenting."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from berth.domain.cluster import (
    IPV4_PREFIXLEN,
    IPV6_PREFIXLEN,
    VXLAN_OVERHEAD,
    VXLAN_PORT,
    ClusterSpec,
    ipv4_address,
    ipv6_address,
    vni,
)

_LOCKS = Path("/run/berth/clusters")
INTERFACE = "i6pn0"
HOSTNAME = "i6pn.modal.local"


class ClusterNetError(OSError):
    pass


@dataclass(frozen=True)
class ClusterLink:
    bridge: str
    host_veth: str
    ipv6: str
    ipv4: str


def _run(argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)


def names(cluster_id: str, task_id: str) -> tuple[str, str]:
    """(the cluster's bridge, this member's host veth); interface names are limited to 15 characters."""
    bridge = "bk" + hashlib.sha256(cluster_id.encode()).hexdigest()[:12]
    veth = "bq" + hashlib.sha256(task_id.encode()).hexdigest()[:12]
    return bridge, veth


def vxlan_of(bridge: str) -> str:
    """The VXLAN that joins the cluster's bridge to its other workers' (named after the bridge)."""
    return "vk" + bridge[2:]


def _mtu(ifname: str) -> int:
    found = re.search(r" mtu (\d+) ", _run(["ip", "-o", "link", "show", ifname]).stdout)
    return int(found[1]) if found else 0


def _span(cluster: ClusterSpec, bridge: str) -> int:
    """Under the cluster's lock: its VXLAN on this worker, towards every peer worker, as a port of its bridge;
    returns the MTU of the link it makes."""
    vx = vxlan_of(bridge)
    if _run(["ip", "link", "show", vx]).returncode != 0:
        route = re.search(r" dev (\S+)", _run(["ip", "-o", "route", "get", cluster.peers[0]]).stdout)
        if route is None:
            raise ClusterNetError(f"cannot span cluster {cluster.cluster_id}: no route to worker {cluster.peers[0]}")
        lower = route[1]
        argv = ["ip", "link", "add", vx, "type", "vxlan", "id", str(vni(cluster.cluster_id))]
        argv += ["dstport", str(VXLAN_PORT), "dev", lower]
        made = _run(argv)
        if made.returncode != 0:
            raise ClusterNetError(f"cannot span cluster {cluster.cluster_id} over VXLAN: {made.stderr.strip()}")
        _run(["ip", "link", "set", vx, "mtu", str(_mtu(lower) - VXLAN_OVERHEAD)])
        for peer in cluster.peers:
            _run(["bridge", "fdb", "append", "00:00:00:00:00:00", "dev", vx, "dst", peer])
        _no_ipv6(vx)
        out = _run(["ip", "-batch", "-"], f"link set {vx} master {bridge}\nlink set {vx} up\n")
        if out.returncode != 0:
            raise ClusterNetError(f"cannot span cluster {cluster.cluster_id} over VXLAN: {out.stderr.strip()}")
    return _mtu(vx)


@contextlib.contextmanager
def _lock(bridge: str) -> Iterator[None]:
    _LOCKS.mkdir(parents=True, exist_ok=True)
    with open(_LOCKS / bridge, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _no_ipv6(ifname: str) -> None:
    """The host keeps no (link-local) address on the cluster's link: members must not reach the host there."""
    with contextlib.suppress(OSError):
        Path(f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6").write_text("1\n")


def _join(cluster: ClusterSpec, task_id: str, netns: str) -> ClusterLink:
    bridge, veth = names(cluster.cluster_id, task_id)
    link = ClusterLink(
        bridge, veth, ipv6_address(cluster.cluster_id, cluster.rank), ipv4_address(cluster.cluster_id, cluster.rank)
    )
    with _lock(bridge):
        if _run(["ip", "link", "show", bridge]).returncode != 0:
            made = _run(["ip", "link", "add", bridge, "type", "bridge"])
            if made.returncode != 0 and "exists" not in made.stderr:
                raise ClusterNetError(f"cannot create the cluster link {bridge}: {made.stderr.strip()}")
        _no_ipv6(bridge)
        _run(["ip", "link", "set", bridge, "up"])
        try:
            mtu = _span(cluster, bridge) if cluster.peers else 0
        except ClusterNetError:
            _remove_if_idle(bridge)
            raise
        host = f"link add {veth} {f'mtu {mtu} ' if mtu else ''}type veth peer name {INTERFACE} netns {netns}\n"
        out = _run(["ip", "-batch", "-"], host + f"link set {veth} master {bridge}\n")
        if out.returncode == 0:
            _no_ipv6(veth)
            out = _run(["ip", "link", "set", veth, "up"])
    if out.returncode == 0:
        inside = "\n".join(
            [
                f"addr add {link.ipv6}/{IPV6_PREFIXLEN} dev {INTERFACE} nodad",
                f"addr add {link.ipv4}/{IPV4_PREFIXLEN} dev {INTERFACE}",
                f"link set {INTERFACE} {f'mtu {mtu} ' if mtu else ''}up",
                "",
            ]
        )
        out = _run(["ip", "-n", netns, "-batch", "-"], inside)
    if out.returncode != 0:
        _leave(link)
        raise ClusterNetError(f"cannot join cluster {cluster.cluster_id}'s link: {out.stderr.strip()}")
    return link


def _remove_if_idle(bridge: str) -> None:
    """Under the cluster's lock: a bridge with no member left goes, with its VXLAN (a joining member holds the
    lock)."""
    ports = _run(["ip", "-o", "link", "show", "master", bridge])
    members = [line for line in ports.stdout.splitlines() if f": {vxlan_of(bridge)}:" not in line]
    if ports.returncode == 0 and not members:
        _run(["ip", "link", "del", vxlan_of(bridge)])
        _run(["ip", "link", "del", bridge])


def _forget_lock(bridge: str) -> None:
    """A cluster's ids are never reused: once its bridge is gone, so is its lock file."""
    with contextlib.suppress(OSError):
        if _run(["ip", "link", "show", bridge]).returncode != 0:
            (_LOCKS / bridge).unlink(missing_ok=True)


def _leave(link: ClusterLink) -> None:
    with _lock(link.bridge):
        _run(["ip", "link", "del", link.host_veth])
        _remove_if_idle(link.bridge)
    _forget_lock(link.bridge)


def remove_idle_bridges() -> None:
    """The links of clusters whose members are all gone (a server killed with them up left their bridges)."""
    out = _run(["ip", "-o", "link", "show", "type", "bridge"]).stdout
    for name in re.findall(r"^\d+: (bk[0-9a-f]{12})[:@]", out, re.MULTILINE):
        with _lock(name):
            _remove_if_idle(name)
        _forget_lock(name)
    vxlans = _run(["ip", "-o", "link", "show", "type", "vxlan"]).stdout
    for name in re.findall(r"^\d+: (vk[0-9a-f]{12})[:@]", vxlans, re.MULTILINE):
        bridge = "bk" + name[2:]
        with _lock(bridge):
            if _run(["ip", "link", "show", bridge]).returncode != 0:  # left when its bridge went
                _run(["ip", "link", "del", name])
        _forget_lock(bridge)


async def join(cluster: ClusterSpec, task_id: str, netns: str) -> ClusterLink:
    return await asyncio.to_thread(_join, cluster, task_id, netns)


async def leave(link: ClusterLink) -> None:
    await asyncio.to_thread(_leave, link)


def hosts_line(link: ClusterLink) -> str:
    return f"{link.ipv6}\t{HOSTNAME}\n"
