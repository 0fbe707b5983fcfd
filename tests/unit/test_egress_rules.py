"""A sandbox's egress allowlist as the create request carries it, and as the rules its network namespace gets
(tests/e2e/test_sandbox_egress.py checks what those rules let through on crun)."""

from __future__ import annotations

import ipaddress

import pytest
from modal_proto import api_pb2

from berth.domain.spec import EgressAllowlist
from berth.errors import InvalidArgument
from berth.scheduling.sandbox_options import egress_allowlist
from berth.worker.egress import EgressError, resolve, rules

ALLOWLIST = api_pb2.NetworkAccess.ALLOWLIST


def _sandbox(cidrs: list[str] = [], domains: list[str] = [], kind: int = ALLOWLIST) -> api_pb2.Sandbox:  # noqa: B006
    access = api_pb2.NetworkAccess(network_access_type=kind, allowed_cidrs=cidrs, allowed_domains=domains)
    return api_pb2.Sandbox(network_access=access)


def test_an_allowlist_is_normalized_and_an_open_or_blocked_network_has_none() -> None:
    got = egress_allowlist(_sandbox(["10.1.2.3/8", "203.0.113.7"], ["PyPI.org.", "pypi.org", "files.pythonhosted.org"]))
    assert got == EgressAllowlist(("10.0.0.0/8", "203.0.113.7/32"), ("pypi.org", "files.pythonhosted.org"))
    assert egress_allowlist(_sandbox()) == EgressAllowlist()  # an empty allowlist: nothing but loopback
    assert egress_allowlist(_sandbox(kind=api_pb2.NetworkAccess.OPEN)) is None
    assert egress_allowlist(_sandbox(kind=api_pb2.NetworkAccess.BLOCKED)) is None
    assert egress_allowlist(api_pb2.Sandbox()) is None


@pytest.mark.parametrize(
    ("cidrs", "domains", "named"),
    [
        (["10.0.0.0/33"], [], "outbound_cidr_allowlist"),
        (["example.com"], [], "outbound_cidr_allowlist"),
        ([], ["*.example.com"], "wildcard"),
        ([], ["*"], "wildcard"),
        ([], ["exa mple.com"], "outbound_domain_allowlist"),
        ([], ["-bad.example.com"], "outbound_domain_allowlist"),
    ],
)
def test_what_cannot_be_honoured_is_refused_by_name(cidrs: list[str], domains: list[str], named: str) -> None:
    with pytest.raises(InvalidArgument, match=named):
        egress_allowlist(_sandbox(cidrs, domains))


def test_the_namespace_accepts_loopback_replies_and_the_allowed_networks_and_rejects_the_rest() -> None:
    networks = (ipaddress.ip_network("203.0.113.0/24"), ipaddress.ip_network("2001:db8::/32"))
    v4 = rules(networks).splitlines()
    assert ":OUTPUT DROP [0:0]" in v4 and "-A OUTPUT -o lo -j ACCEPT" in v4
    assert "-A OUTPUT -d 203.0.113.0/24 -j ACCEPT" in v4 and not any("2001:db8" in line for line in v4)
    accepts = [i for i, line in enumerate(v4) if line.endswith("-j ACCEPT")]
    rejects = [i for i, line in enumerate(v4) if "-j REJECT" in line]
    assert rejects and max(accepts) < min(rejects)  # the rejects come last: what is listed is never cut off
    v6 = rules(networks, v6=True).splitlines()
    assert "-A OUTPUT -d 2001:db8::/32 -j ACCEPT" in v6
    assert "-A OUTPUT -j REJECT --reject-with icmp6-adm-prohibited" in v6


def test_domains_are_resolved_into_addresses_the_sandbox_may_reach_and_its_hosts_file() -> None:
    resolved = resolve(EgressAllowlist(("198.51.100.0/24",), ("localhost",)))
    assert ipaddress.ip_network("198.51.100.0/24") in resolved.networks
    assert ipaddress.ip_network("127.0.0.1/32") in resolved.networks
    assert ("127.0.0.1", "localhost") in resolved.hosts
    with pytest.raises(EgressError, match="no-such-name.invalid"):
        resolve(EgressAllowlist((), ("no-such-name.invalid",)))
