"""Sandbox.create options that become parts of a sandbox's SandboxSpec after checks: its readiness probe
(`readiness_probe=`) and its egress allowlist (`outbound_cidr_allowlist=` / `outbound_domain_allowlist=`).
What Berth cannot honour is refused by name here, before any worker is asked."""

from __future__ import annotations

import ipaddress
import re

from modal_proto import api_pb2

from berth.domain.spec import EgressAllowlist, ReadinessProbe
from berth.errors import InvalidArgument

DEFAULT_PROBE_INTERVAL_MS = 100  # the client's default (modal.Probe)
# A DNS name: dot-separated labels of letters, digits and inner hyphens (a trailing dot is dropped first).
_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_DOMAIN = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")


def readiness_probe(definition: api_pb2.Sandbox) -> ReadinessProbe | None:
    if not definition.HasField("readiness_probe"):
        return None
    probe = definition.readiness_probe
    interval = probe.interval_ms if probe.HasField("interval_ms") and probe.interval_ms > 0 else None
    interval = interval or DEFAULT_PROBE_INTERVAL_MS
    kind = probe.WhichOneof("probe_oneof")
    if kind == "tcp_port" and 0 < probe.tcp_port <= 65535:
        return ReadinessProbe(tcp_port=probe.tcp_port, interval_ms=interval)
    if kind == "exec_command" and probe.exec_command.argv:
        return ReadinessProbe(exec_argv=tuple(probe.exec_command.argv), interval_ms=interval)
    raise InvalidArgument("readiness_probe needs a TCP port in [1, 65535] or a command (Probe.with_tcp/with_exec)")


def egress_allowlist(definition: api_pb2.Sandbox) -> EgressAllowlist | None:
    """None unless the sandbox asked for an allowlist; an empty one allows nothing but its own loopback."""
    access = definition.network_access
    if access.network_access_type != api_pb2.NetworkAccess.ALLOWLIST and not (
        access.allowed_cidrs or access.allowed_domains
    ):
        return None
    return EgressAllowlist(
        cidrs=tuple(_cidr(c) for c in access.allowed_cidrs),
        domains=tuple(dict.fromkeys(_domain(d) for d in access.allowed_domains)),
    )


def _cidr(text: str) -> str:
    try:
        return str(ipaddress.ip_network(text.strip(), strict=False))
    except ValueError:
        raise InvalidArgument(
            f"outbound_cidr_allowlist: {text!r} is not a network in CIDR notation (like 203.0.113.0/24)"
        ) from None


def _domain(text: str) -> str:
    name = text.strip().lower().removesuffix(".")
    if name == "*" or name.startswith("*."):
        raise InvalidArgument(
            f"outbound_domain_allowlist: wildcard domains ({text!r}) are not supported by Berth yet: it resolves "
            "each allowed name when the sandbox starts; list the names themselves"
        )
    if len(name) > 253 or not _DOMAIN.match(name):
        raise InvalidArgument(f"outbound_domain_allowlist: {text!r} is not a domain name")
    return name
