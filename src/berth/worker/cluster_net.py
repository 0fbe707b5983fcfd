"""The private link of one gang-scheduled cluster (`@modal.clustered`): a bridge on the host per cluster, with no
address of its own, and one more interface (`i6pn0`) in each member's network namespace, addressed from
`berth.domain.cluster` (IPv6 and IPv4). Members reach each other over it directly; the host, other clusters and
other containers are not on it (their only link is berth0, whose ports are isolated). `i6pn.modal.local`
names the member's own IPv6 address, as the modal client expects.

The bridge is shared by the cluster's members on this worker: the first to join creates it and the last to
leave removes it, under one lock file per cluster."""

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

from berth.domain.cluster import IPV4_PREFIXLEN, IPV6_PREFIXLEN, ClusterSpec, ipv4_address, ipv6_address

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
        host = f"link add {veth} type veth peer name {INTERFACE} netns {netns}\nlink set {veth} master {bridge}\n"
        out = _run(["ip", "-batch", "-"], host)
        if out.returncode == 0:
            _no_ipv6(veth)
            out = _run(["ip", "link", "set", veth, "up"])
    if out.returncode == 0:
        inside = "\n".join(
            [
                f"addr add {link.ipv6}/{IPV6_PREFIXLEN} dev {INTERFACE} nodad",
                f"addr add {link.ipv4}/{IPV4_PREFIXLEN} dev {INTERFACE}",
                f"link set {INTERFACE} up",
                "",
            ]
        )
        out = _run(["ip", "-n", netns, "-batch", "-"], inside)
    if out.returncode != 0:
        _leave(link)
        raise ClusterNetError(f"cannot join cluster {cluster.cluster_id}'s link: {out.stderr.strip()}")
    return link


def _remove_if_idle(bridge: str) -> None:
    """Under the cluster's lock: a bridge with no member left goes (a joining member holds the lock)."""
    ports = _run(["ip", "-o", "link", "show", "master", bridge])
    if ports.returncode == 0 and not ports.stdout.strip():
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


async def join(cluster: ClusterSpec, task_id: str, netns: str) -> ClusterLink:
    return await asyncio.to_thread(_join, cluster, task_id, netns)


async def leave(link: ClusterLink) -> None:
    await asyncio.to_thread(_leave, link)


def hosts_line(link: ClusterLink) -> str:
    return f"{link.ipv6}\t{HOSTNAME}\n"
