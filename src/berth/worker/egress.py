"""Egress allowlists of sandboxes (`outbound_cidr_allowlist`, `outbound_domain_allowlist`): the sandbox's own
network namespace gets a filter table whose OUTPUT chain accepts only loopback, replies on connections made
to the sandbox, and the allowed networks; everything else is rejected at once (a TCP reset, an ICMP error),
so a refused connection fails fast instead of hanging. The rules live in the namespace and go with it. The
sandbox cannot change them: its root has no capabilities over a namespace its user namespace does not own,
and no NET_ADMIN anyway.

An allowlist only narrows what an open sandbox reaches: the host's rules (berth.worker.network) still apply
on top, so other containers, private networks and host ports other than its server's stay out of reach even
when listed. The control plane (its ports on the bridge address) is reachable only when the bridge address is
in the list.

Domains are resolved (IPv4) on the worker when the sandbox starts, and their addresses are allowed and
written to the sandbox's /etc/hosts. No DNS server is reachable from an allowlisted sandbox unless its address
is listed (DNS would be a way out), so an allowed name resolves from /etc/hosts and any other name does not
resolve at all. Addresses a name moves to later are not followed: the sandbox keeps the ones it started with."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from berth.domain.spec import EgressAllowlist

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class EgressError(OSError):
    """The allowlist cannot be put in place; the sandbox does not start."""


@dataclass(frozen=True)
class ResolvedEgress:
    networks: tuple[IPNetwork, ...]  # everything the sandbox may connect to
    hosts: tuple[tuple[str, str], ...]  # (address, name) for its /etc/hosts


def resolve(allow: EgressAllowlist) -> ResolvedEgress:
    """The allowlist's networks, plus one /32 per address of each domain (a name that does not resolve is an
    error: the sandbox could never reach it)."""
    networks = [ipaddress.ip_network(c, strict=False) for c in allow.cidrs]
    hosts: list[tuple[str, str]] = []
    for name in allow.domains:
        try:
            infos = socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)
        except OSError as exc:
            raise EgressError(f"outbound_domain_allowlist: {name} does not resolve on the worker: {exc}") from exc
        for address in sorted({str(info[4][0]) for info in infos}):
            networks.append(ipaddress.ip_network(f"{address}/32"))
            hosts.append((address, name))
    return ResolvedEgress(tuple(dict.fromkeys(networks)), tuple(hosts))


def rules(networks: tuple[IPNetwork, ...], v6: bool = False) -> str:
    """The namespace's filter table, as iptables-restore (or ip6tables-restore) input."""
    lines = [
        "*filter",
        ":INPUT ACCEPT [0:0]",
        ":FORWARD DROP [0:0]",
        ":OUTPUT DROP [0:0]",
        "-A OUTPUT -o lo -j ACCEPT",
        # replies on connections made to the sandbox (its readiness probe, the host's web_server proxy)
        "-A OUTPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
    ]
    lines += [f"-A OUTPUT -d {net} -j ACCEPT" for net in networks if (net.version == 6) == v6]
    icmp = "icmp6-adm-prohibited" if v6 else "icmp-admin-prohibited"
    lines += [
        "-A OUTPUT -p tcp -j REJECT --reject-with tcp-reset",
        f"-A OUTPUT -j REJECT --reject-with {icmp}",
        "COMMIT",
        "",
    ]
    return "\n".join(lines)


def hosts_lines(hosts: tuple[tuple[str, str], ...]) -> str:
    return "".join(f"{address}\t{name}\n" for address, name in hosts)


def _apply(netns_path: str, resolved: ResolvedEgress) -> None:
    for tool, v6 in (("iptables-restore", False), ("ip6tables-restore", True)):
        out = subprocess.run(
            ["nsenter", f"--net={netns_path}", tool, "-w"],
            input=rules(resolved.networks, v6),
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0:
            raise EgressError(f"cannot apply the sandbox's egress allowlist ({tool}): {out.stderr.strip()}")


def _restrict(allow: EgressAllowlist, netns_path: str, etc_hosts: Path) -> None:
    resolved = resolve(allow)
    _apply(netns_path, resolved)
    if resolved.hosts:
        with open(etc_hosts, "a") as f:
            f.write(hosts_lines(resolved.hosts))


async def restrict(allow: EgressAllowlist, netns_path: str, etc_hosts: Path) -> None:
    """Before the sandbox's first process runs: its namespace accepts only what `allow` lists, and the allowed
    names resolve through its /etc/hosts."""
    await asyncio.to_thread(_restrict, allow, netns_path, etc_hosts)
