"""Container networking: one bridge on the host (berth0, 172.21.0.1/16, NAT to the outside) and one
network namespace per container, joined to the bridge by a veth pair.

The host end of the bridge is the address containers use to reach the server (DESIGN.md: the modal
client allows plain http to 172.21.0.1). The bridge and its NAT rule are host state shared by every
Berth server on the machine, like docker0; per-container namespaces and veths are removed on exit.

Isolation (untrusted code must not touch the host or its neighbours):
- every container's veth is an `isolated` bridge port, so frames between two containers are never
  bridged, and FORWARD rejects what is routed from berth0 back to berth0;
- from berth0 the host accepts only the ports a live Berth server opened for its containers (its API,
  its HTTP side and its web endpoints, on 172.21.0.1) and rejects the rest, on every host address;
- forwarded traffic to the VXLAN port (a cluster's link between workers) is rejected wherever it goes;
- forwarded traffic to private and link-local networks is rejected, except the host's own upstream
  (its DNS resolvers, proxies and Debian mirror) when those are on such addresses; IPv6 from berth0
  is rejected (containers have no IPv6 route; this stops link-local access to the host).
The shared chains are rebuilt atomically (iptables-restore) by every server and worker at start; each
server owns one chain, keyed by its data dir and port, which it removes when it stops; the chain of a
server that died without removing it is removed by the next server that starts (its lock file is free)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import ipaddress
import json
import logging
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

from berth.domain.cluster import VXLAN_PORT

BRIDGE = "berth0"
HOST_IP = "172.21.0.1"
BRIDGE_MAC = "02:42:ac:15:00:01"  # locally administered; see _fix_bridge_address
SUBNET = ipaddress.ip_network("172.21.0.0/16")
NETNS_DIR = Path("/var/run/netns")
_LEASES = Path("/run/berth/net")
_LEASE_GRACE_S = 60.0
_FIREWALL_DIR = Path("/run/berth/firewall")

log = logging.getLogger("berth.worker.network")


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
    _fix_bridge_address()
    _run(["ip", "link", "set", BRIDGE, "up"])
    with contextlib.suppress(OSError):
        Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
    rule = nat_rule()
    if _run(["iptables", "-C", *rule]).returncode != 0:
        added = _run(["iptables", "-A", *rule])
        if added.returncode != 0:
            raise NetworkError(f"cannot add the NAT rule for {SUBNET}: {added.stderr.strip()}")
    ensure_isolation()


def _fix_bridge_address() -> None:
    """Give the bridge a MAC address of its own. Left alone, a Linux bridge takes the lowest MAC of its ports,
    which changes whenever a container's veth comes or goes: containers that cached the old one for
    172.21.0.1 then lose the server for seconds (until their ARP entry is refreshed), and a call in flight
    can time out. Set once (addr_assign_type 3: set by the user), it stays."""
    try:
        assigned = Path(f"/sys/class/net/{BRIDGE}/addr_assign_type").read_text().strip()
    except OSError:
        return
    if assigned != "3":
        _run(["ip", "link", "set", BRIDGE, "address", BRIDGE_MAC])


def names_for(container_id: str) -> tuple[str, str]:
    """(netns name, host veth name); interface names are limited to 15 characters."""
    digest = hashlib.sha256(container_id.encode()).hexdigest()[:12]
    return f"berth-{container_id}", f"bv{digest}"


@dataclass(frozen=True)
class ContainerNet:
    netns: str
    host_veth: str
    address: str
    source_ip: str = ""  # a proxy's address its outbound connections leave from (SNAT); "" for masquerade

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


@contextlib.contextmanager
def _leases_locked() -> Iterator[None]:
    """Every process on the machine leases and frees addresses one at a time. Without it, two containers started
    together (a cluster's members) could both find the same dead container's lease, both take it over, and end up
    with one address between them: each then loses its connections to the server."""
    _LEASES.mkdir(parents=True, exist_ok=True)
    with open(_LEASES / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _lease_address(netns: str) -> str:
    """Reserve a free address across every process on the machine: one file per address, naming its holder."""
    with _leases_locked():
        hosts = SUBNET.hosts()
        next(hosts)  # .0.1 is the host
        for addr in hosts:
            lease = _LEASES / str(addr)
            if lease.exists():
                if not _stale(lease):
                    continue
                _drop_snat(str(addr))  # a proxy's rule its dead owner left; its namespace is gone: reuse the address
            lease.write_text(netns)
            return str(addr)
    raise NetworkError(f"no free address left in {SUBNET}")


def snat_rule(address: str, source_ip: str) -> list[str]:
    """A proxied container's outbound connections leave from its proxy's address (before the masquerade rule)."""
    return [
        "POSTROUTING",
        "-t",
        "nat",
        "-s",
        f"{address}/32",
        "!",
        "-o",
        BRIDGE,
        "-j",
        "SNAT",
        "--to-source",
        source_ip,
    ]


def _drop_snat(address: str) -> None:
    rules = _run(["iptables", "-w", "-t", "nat", "-S", "POSTROUTING"]).stdout.splitlines()
    for rule in rules:
        fields = rule.split()
        if fields[:1] == ["-A"] and f"{address}/32" in fields and "SNAT" in fields:
            _run(["iptables", "-w", "-t", "nat", "-D", *fields[1:]])


def _add_snat(net: ContainerNet) -> None:
    local = {str(a) for a in _local_addresses()}
    if net.source_ip not in local:
        raise NetworkError(
            f"The proxy's source address {net.source_ip} is not an address of this worker's host: add it to an "
            "interface (e.g. `ip addr add ADDR/32 dev eth0`) or give the proxy one the host has"
        )
    rule = snat_rule(net.address, net.source_ip)
    added = _run(["iptables", "-w", "-I", rule[0], "1", *rule[1:]])
    if added.returncode != 0:
        raise NetworkError(f"cannot route the container through its proxy's address: {added.stderr.strip()}")


def _setup(container_id: str, source_ip: str = "") -> ContainerNet:
    netns, veth = names_for(container_id)
    address = _lease_address(netns)
    net = ContainerNet(netns, veth, address, source_ip)
    host_cmds = "\n".join(
        [
            f"netns add {netns}",
            f"link add {veth} type veth peer name eth0 netns {netns}",
            f"link set {veth} master {BRIDGE}",
            # Isolated ports never exchange frames with each other, only with the host (the bridge).
            f"link set {veth} type bridge_slave isolated on",
            f"link set {veth} up",
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
    if source_ip:
        try:
            _add_snat(net)
        except NetworkError:
            _teardown(net)
            raise
    return net


def _setup_loopback(container_id: str) -> ContainerNet:
    netns, _ = names_for(container_id)
    net = ContainerNet(netns, "", "")
    out = _run(["ip", "netns", "add", netns])
    if out.returncode == 0:
        out = _run(["ip", "-n", netns, "link", "set", "lo", "up"])
    if out.returncode != 0:
        _teardown(net)
        raise NetworkError(f"cannot set up the network of {container_id}: {out.stderr.strip()}")
    return net


def _teardown(net: ContainerNet) -> None:
    if net.source_ip:
        _drop_snat(net.address)
    if net.host_veth:
        _run(["ip", "link", "del", net.host_veth])
    _run(["ip", "netns", "del", net.netns])
    if net.address:
        _release_address(net.address, net.netns)


def _release_address(address: str, netns: str) -> None:
    """Free an address only while it is still this namespace's: a second teardown of one container (a pooled
    container discarded twice) must not free the address another container has leased since, which a third
    would then get too, and two containers with one address each lose their connections to the server."""
    lease = _LEASES / address
    with _leases_locked(), contextlib.suppress(OSError):
        owner = lease.read_text().strip()
        if owner == netns:
            lease.unlink()
        else:
            log.warning("not freeing address %s for %s: it is leased to %s now", address, netns, owner or "nobody")


async def setup(container_id: str, source_ip: str = "") -> ContainerNet:
    return await asyncio.to_thread(_setup, container_id, source_ip)


async def setup_loopback(container_id: str) -> ContainerNet:
    """A network namespace with only its loopback: for a container that must reach nothing (block_network)
    whose runtime needs a namespace made for it (runsc, which uses the network it is started in)."""
    return await asyncio.to_thread(_setup_loopback, container_id)


async def teardown(net: ContainerNet) -> None:
    await asyncio.to_thread(_teardown, net)


# --- isolation: iptables chains (filter table) -------------------------------------------------------

INPUT_CHAIN = "BERTH-INPUT"  # INPUT -i berth0 jumps here
FORWARD_CHAIN = "BERTH-FORWARD"  # FORWARD -i berth0 jumps here
PORTS_CHAIN = "BERTH-PORTS"  # one jump per live server, to that server's chain
SERVER_PREFIX = "BERTH-S-"
# Destinations containers must not reach through NAT: private, shared (CGNAT) and link-local networks.
BLOCKED_NETS = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10")
_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


def _ipt(*args: str, v6: bool = False) -> subprocess.CompletedProcess[str]:
    return _run(["ip6tables" if v6 else "iptables", "-w", *args])


@contextlib.contextmanager
def _firewall_lock() -> Iterator[None]:
    """Every change to the shared chains holds this lock, so concurrent servers never interleave."""
    _FIREWALL_DIR.mkdir(parents=True, exist_ok=True)
    with open(_FIREWALL_DIR / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _restore(text: str) -> None:
    """Apply rules in one transaction; a declared chain is emptied first, so a rebuild never leaves it
    half-filled or open."""
    out = _run(["iptables-restore", "-w", "--noflush"], text)
    if out.returncode != 0:
        raise NetworkError(f"cannot apply the container firewall: {out.stderr.strip()}")


def _ensure_chain(name: str, v6: bool = False) -> None:
    if _ipt("-nL", name, v6=v6).returncode != 0:
        made = _ipt("-N", name, v6=v6)
        if made.returncode != 0 and "exist" not in made.stderr:
            raise NetworkError(f"cannot create chain {name}: {made.stderr.strip()}")


def _ensure_first(table_chain: str, rule: list[str], v6: bool = False) -> None:
    if _ipt("-C", table_chain, *rule, v6=v6).returncode != 0:
        added = _ipt("-I", table_chain, "1", *rule, v6=v6)
        if added.returncode != 0:
            raise NetworkError(f"cannot add {' '.join(rule)} to {table_chain}: {added.stderr.strip()}")


def _local_addresses() -> set[ipaddress.IPv4Address]:
    out = _run(["ip", "-o", "-4", "addr", "show"]).stdout
    return {ipaddress.IPv4Address(m) for m in re.findall(r"inet (\d+\.\d+\.\d+\.\d+)/", out)}


def _resolve(host: str) -> set[ipaddress.IPv4Address]:
    try:
        return {ipaddress.IPv4Address(host)}
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_STREAM)
    except OSError:
        return set()
    return {ipaddress.IPv4Address(info[4][0]) for info in infos}


def _url_endpoint(url: str) -> tuple[str, int] | None:
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if not parts.hostname:
        return None
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    return parts.hostname, port


def upstreams() -> list[tuple[str, ipaddress.IPv4Address, int]]:
    """(protocol, address, port) of the host's own upstream that containers use: DNS resolvers from
    /etc/resolv.conf, proxies from the environment, the Debian mirror of the host's apt sources, and
    BERTH_EGRESS_ALLOW (comma-separated host:port or URLs, for a private package mirror)."""
    found: list[tuple[str, ipaddress.IPv4Address, int]] = []
    with contextlib.suppress(OSError):
        for line in Path("/etc/resolv.conf").read_text().splitlines():
            fields = line.split()
            if len(fields) >= 2 and fields[0] == "nameserver":
                for addr in _resolve(fields[1]):
                    found += [("udp", addr, 53), ("tcp", addr, 53)]
    endpoints = [_url_endpoint(os.environ[v]) for v in _PROXY_VARS if os.environ.get(v)]
    from berth.worker.rootfs import debian_mirror

    endpoints.append(_url_endpoint(debian_mirror()))
    allow = os.environ.get("BERTH_EGRESS_ALLOW", "")  # read here: only the firewall uses it
    endpoints += [_url_endpoint(item.strip()) for item in allow.split(",") if item.strip()]
    for endpoint in endpoints:
        if endpoint is not None:
            found += [("tcp", addr, endpoint[1]) for addr in _resolve(endpoint[0])]
    return sorted(set(found))


def base_rules() -> str:
    """The shared chains, as iptables-restore input."""
    blocked = [ipaddress.IPv4Network(n) for n in BLOCKED_NETS]
    local = _local_addresses()
    inp = [
        f"-A {INPUT_CHAIN} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        f"-A {INPUT_CHAIN} -j {PORTS_CHAIN}",
    ]
    fwd = [
        # Routed back onto the bridge: another container (bridged frames between ports are already
        # stopped by the isolated ports; with br_netfilter they also show up here).
        f"-A {FORWARD_CHAIN} -o {BRIDGE} -j REJECT --reject-with icmp-host-prohibited",
        # VXLAN, anywhere: a container must not send frames into a cluster's link that spans workers (the
        # workers take them from each other's addresses, which a container's traffic leaves from after NAT).
        f"-A {FORWARD_CHAIN} -p udp --dport {VXLAN_PORT} -j REJECT --reject-with icmp-port-unreachable",
    ]
    for proto, addr, port in upstreams():
        if addr in local:
            inp.append(f"-A {INPUT_CHAIN} -d {addr}/32 -p {proto} --dport {port} -j ACCEPT")
        elif any(addr in net for net in blocked):
            fwd.append(f"-A {FORWARD_CHAIN} -d {addr}/32 -p {proto} --dport {port} -j ACCEPT")
    inp += [
        f"-A {INPUT_CHAIN} -p tcp -j REJECT --reject-with tcp-reset",
        f"-A {INPUT_CHAIN} -j REJECT --reject-with icmp-port-unreachable",
    ]
    for net in BLOCKED_NETS:
        fwd += [
            f"-A {FORWARD_CHAIN} -d {net} -p tcp -j REJECT --reject-with tcp-reset",
            f"-A {FORWARD_CHAIN} -d {net} -j REJECT --reject-with icmp-net-prohibited",
        ]
    return "\n".join(["*filter", f":{INPUT_CHAIN} - [0:0]", f":{FORWARD_CHAIN} - [0:0]", *inp, *fwd, "COMMIT", ""])


def ensure_isolation() -> None:
    """Install (or rebuild) the shared chains and their jumps; idempotent, safe while servers run."""
    with _firewall_lock():
        _gc_locked()
        for chain in (PORTS_CHAIN, INPUT_CHAIN, FORWARD_CHAIN):
            _ensure_chain(chain)
        _restore(base_rules())
        _ensure_first("INPUT", ["-i", BRIDGE, "-j", INPUT_CHAIN])
        _ensure_first("FORWARD", ["-i", BRIDGE, "-j", FORWARD_CHAIN])
        # Containers get no IPv6 route; their link-local addresses must not reach the host either.
        if _ipt("-nL", v6=True).returncode == 0:
            for chain in ("INPUT", "FORWARD"):
                _ensure_first(chain, ["-i", BRIDGE, "-j", "REJECT"], v6=True)


def _server_chains() -> list[str]:
    out = _ipt("-S").stdout
    return sorted(set(re.findall(rf"^-N ({re.escape(SERVER_PREFIX)}\S+)$", out, re.MULTILINE)))


def _remove_server_chain(chain: str) -> None:
    while _ipt("-D", PORTS_CHAIN, "-j", chain).returncode == 0:
        pass
    _ipt("-F", chain)
    _ipt("-X", chain)


def _gc_locked() -> None:
    """Remove the chains of servers that are gone: nobody holds their lock file."""
    for chain in _server_chains():
        lock = _FIREWALL_DIR / chain
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue  # its server is alive
        _remove_server_chain(chain)
        lock.unlink(missing_ok=True)
        os.close(fd)
        log.info("removed the firewall chain %s of a server that is gone", chain)


def server_chain(data_dir: Path, port: int) -> str:
    digest = hashlib.sha256(f"{Path(data_dir).resolve()}:{port}".encode()).hexdigest()[:12]
    return f"{SERVER_PREFIX}{digest}"


class ServerFirewall:
    """The ports one server opens to containers on the bridge. Its chain lives while the server holds
    the chain's lock file; close() removes it, and a server that died leaves it to the next one's GC."""

    def __init__(self, data_dir: Path, port: int, ports: list[int]) -> None:
        self.chain = server_chain(data_dir, port)
        self.owner = f"berth pid={os.getpid()} data_dir={str(data_dir)[:180]}"
        self.ports = sorted(set(ports))
        self._lock: IO[str] | None = None

    def start(self) -> None:
        ensure_bridge()  # the shared chains, and a GC of dead servers' chains
        with _firewall_lock():
            self._lock = open(_FIREWALL_DIR / self.chain, "w")  # noqa: SIM115 - held until close()
            try:
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                self._lock.close()
                self._lock = None
                raise NetworkError(f"another live server owns firewall chain {self.chain}") from exc
            self._apply_locked()

    def _apply_locked(self) -> None:
        rules = [f'-A {self.chain} -m comment --comment "{self.owner}"']
        for i in range(0, len(self.ports), 15):  # multiport takes at most 15 ports
            chunk = ",".join(str(p) for p in self.ports[i : i + 15])
            rules.append(f"-A {self.chain} -d {HOST_IP}/32 -p tcp -m multiport --dports {chunk} -j ACCEPT")
        _ensure_chain(self.chain)
        _restore("\n".join(["*filter", f":{self.chain} - [0:0]", *rules, "COMMIT", ""]))
        if _ipt("-C", PORTS_CHAIN, "-j", self.chain).returncode != 0:
            added = _ipt("-A", PORTS_CHAIN, "-j", self.chain)
            if added.returncode != 0:
                raise NetworkError(f"cannot add {self.chain} to {PORTS_CHAIN}: {added.stderr.strip()}")

    def allow(self, port: int) -> None:
        """Open one more port (a web endpoint's) to containers."""
        if port in self.ports or self._lock is None:
            return
        self.ports = sorted({*self.ports, port})
        with _firewall_lock():
            self._apply_locked()

    async def allow_async(self, port: int) -> None:
        await asyncio.to_thread(self.allow, port)

    def close(self) -> None:
        if self._lock is None:
            return
        with _firewall_lock():
            _remove_server_chain(self.chain)
            (_FIREWALL_DIR / self.chain).unlink(missing_ok=True)
            self._lock.close()
            self._lock = None


def isolation_state() -> tuple[bool, str]:
    """For `berth doctor`: whether the isolation rules are in place, and what they hold."""
    problems = []
    for chain, parent in ((INPUT_CHAIN, "INPUT"), (FORWARD_CHAIN, "FORWARD")):
        if _ipt("-C", parent, "-i", BRIDGE, "-j", chain).returncode != 0:
            problems.append(f"{parent} does not send {BRIDGE} traffic to {chain}")
    if _ipt("-nL", PORTS_CHAIN).returncode != 0:
        problems.append(f"chain {PORTS_CHAIN} missing")
    try:
        ports = json.loads(_run(["bridge", "-j", "-d", "link", "show"]).stdout or "[]")
    except ValueError:
        ports = []
    open_ports = [p.get("ifname", "?") for p in ports if p.get("master") == BRIDGE and not p.get("isolated")]
    if open_ports:
        problems.append(f"bridge ports not isolated: {', '.join(open_ports)}")
    try:
        nf = Path("/proc/sys/net/bridge/bridge-nf-call-iptables").read_text().strip()
    except OSError:
        nf = "absent"
    if problems:
        return False, "; ".join(problems)
    servers = len(_server_chains())
    return True, (
        f"from {BRIDGE} the host accepts only the ports of {servers} live server(s); "
        f"containers cannot reach each other or private networks (bridge-nf-call-iptables={nf})"
    )
