"""Gang-scheduled containers (`@modal.clustered(size=N)`): what one member is told, and the private addresses
the members of one cluster reach each other at. Both sides compute the addresses from the cluster id and the
rank, so the worker that sets up the link and the control plane that answers TaskClusterHello agree without
telling each other. Where the members go (`place`): one worker when one has room for all, else as few workers as
can hold them, whose links are joined by a VXLAN of the cluster's own (`vni`)."""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass

# Clusters get IPv6 from a unique-local /48 of their own (fd + 40 bits of the cluster id's hash) and IPv4 from a
# /24 of 10.0.0.0/8: an on-link network of the cluster's own link, never routed through the host.
MAX_CLUSTER_SIZE = 250


# A cluster whose members are on several workers: each worker's link joins the others' over VXLAN (UDP), whose
# headers take this much of the workers' MTU.
VXLAN_PORT = 4789
VXLAN_OVERHEAD = 50


@dataclass(frozen=True)
class ClusterSpec:
    cluster_id: str
    rank: int
    size: int
    # The addresses of the other workers that run members of this cluster (empty: all of it is on this worker).
    peers: tuple[str, ...] = ()


def room_for(slots: int, memory_mb: int | None, cpu: float | None, member_memory_mb: int, member_cpu: float) -> int:
    """How many members one worker can take with this much free (None: not known, so not limiting)."""
    room = max(0, slots)
    if member_memory_mb and memory_mb is not None:
        room = min(room, max(0, memory_mb) // member_memory_mb)
    if member_cpu > 0 and cpu is not None:
        room = min(room, int(max(0.0, cpu) / member_cpu + 1e-9))
    return room


def place(room: list[tuple[str, int]], size: int) -> list[str] | None:
    """The worker of each rank, given how many members each worker can take (in the order of preference): all on
    the first that takes them all (the link then stays on one host), else over as few workers as can hold them,
    the roomiest first, each holding consecutive ranks. None when all the workers together cannot."""
    for worker, n in room:
        if n >= size:
            return [worker] * size
    ranks: list[str] = []
    for worker, n in sorted(room, key=lambda r: -r[1]):
        ranks += [worker] * min(n, size - len(ranks))
        if len(ranks) == size:
            return ranks
    return None


def _digest(cluster_id: str) -> bytes:
    return hashlib.sha256(cluster_id.encode()).digest()


def ipv6_address(cluster_id: str, rank: int) -> str:
    d = _digest(cluster_id)
    prefix = bytes([0xFD, *d[:5]]) + b"\x00" * 2  # a /64 inside fdXX:XXXX:XXXX::/48
    return str(ipaddress.IPv6Address(prefix + (rank + 1).to_bytes(8, "big")))


def ipv4_address(cluster_id: str, rank: int) -> str:
    d = _digest(cluster_id)
    return str(ipaddress.IPv4Address(bytes([10, d[5], d[6], rank + 1])))


def vni(cluster_id: str) -> int:
    """The cluster's VXLAN network identifier (24 bits; 0 is not used)."""
    return int.from_bytes(_digest(cluster_id)[7:10], "big") or 1


IPV6_PREFIXLEN = 64
IPV4_PREFIXLEN = 24
