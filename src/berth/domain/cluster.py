"""Gang-scheduled containers (`@modal.clustered(size=N)`): what one member is told, and the private addresses
the members of one cluster reach each other at. Both sides compute the addresses from the cluster id and the
rank, so the worker that sets up the link and the control plane that answers TaskClusterHello agree without
telling each other."""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass

# Clusters get IPv6 from a unique-local /48 of their own (fd + 40 bits of the cluster id's hash) and IPv4 from a
# /24 of 10.0.0.0/8: an on-link network of the cluster's own link, never routed through the host.
MAX_CLUSTER_SIZE = 250


@dataclass(frozen=True)
class ClusterSpec:
    cluster_id: str
    rank: int
    size: int


def _digest(cluster_id: str) -> bytes:
    return hashlib.sha256(cluster_id.encode()).digest()


def ipv6_address(cluster_id: str, rank: int) -> str:
    d = _digest(cluster_id)
    prefix = bytes([0xFD, *d[:5]]) + b"\x00" * 2  # a /64 inside fdXX:XXXX:XXXX::/48
    return str(ipaddress.IPv6Address(prefix + (rank + 1).to_bytes(8, "big")))


def ipv4_address(cluster_id: str, rank: int) -> str:
    d = _digest(cluster_id)
    return str(ipaddress.IPv4Address(bytes([10, d[5], d[6], rank + 1])))


IPV6_PREFIXLEN = 64
IPV4_PREFIXLEN = 24
