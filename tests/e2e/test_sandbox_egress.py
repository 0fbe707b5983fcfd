"""Egress allowlists of sandboxes through the stock client, on crun: `outbound_cidr_allowlist` and
`outbound_domain_allowlist` let a sandbox connect to what they list and nothing else: not its server's ports
unless the bridge address is listed, not other sandboxes, not the internet beyond the list, and no DNS but the
allowed names. Reachable targets are the ones tests/e2e/test_network_isolation.py shows open sandboxes reach:
the server's own ports on 172.21.0.1, and pypi.org:443 through NAT."""

from __future__ import annotations

import socket
import textwrap

from tests.e2e.conftest import BerthServer, last_json, sdk

HEAD = """
import json, time, modal
from modal.exception import *
app = modal.App.lookup({app!r}, create_if_missing=True)
image = modal.Image.debian_slim()
API, HTTP = {api_port}, {http_port}
# What a sandbox reaches: "connected", "refused" (and how fast), "unresolved" (no such name for it), or the error.
REACH = '''
import json, socket, sys, time
seen = {{}}
for host, port in json.loads(sys.argv[1]):
    t0 = time.monotonic()
    try:
        socket.create_connection((host, port), timeout=8).close()
        what = "connected"
    except socket.gaierror:
        what = "unresolved"
    except ConnectionRefusedError:
        what = "refused"
    except OSError as exc:
        what = type(exc).__name__ + ": " + str(exc)
    seen[f"{{host}}:{{port}}"] = [what, round(time.monotonic() - t0, 2)]
print(json.dumps(seen))
'''
def reach(sb, *targets):
    p = sb.exec("python3", "-c", REACH, json.dumps(targets))
    out = p.stdout.read()
    assert p.wait() == 0, p.stderr.read()
    return json.loads(out)
MY_ADDRESS = ["python3", "-c", "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
              "s.connect(('172.21.0.1', 9)); print(s.getsockname()[0])"]
"""


def run(server: BerthServer, app: str, body: str, timeout: float = 300) -> dict:  # type: ignore[type-arg]
    head = HEAD.format(app=app, api_port=server.port, http_port=server.port + 1)
    return last_json(sdk(server, head + textwrap.dedent(body), timeout=timeout))


def _pypi_address() -> str:
    return str(socket.getaddrinfo("pypi.org", 443, socket.AF_INET, socket.SOCK_STREAM)[0][4][0])


def _outcome(seen: dict, target: str) -> str:  # type: ignore[type-arg]
    return str(seen[target][0])


def test_cidr_allowlist_reaches_only_the_listed_networks(berth_oci: BerthServer) -> None:
    pypi = _pypi_address()
    seen = run(
        berth_oci,
        "sb-egress-cidr",
        f"""
        PYPI = {pypi!r}
        out = {{}}
        peer = modal.Sandbox.create("python3", "-m", "http.server", "8000", app=app, image=image,
                                    readiness_probe=modal.Probe.with_tcp(8000))
        peer.wait_until_ready(timeout=60)
        peer_ip = peer.exec(*MY_ADDRESS).stdout.read().strip()
        import socket
        socket.create_connection((peer_ip, 8000), timeout=10).close()  # the host reaches it: it listens
        targets = [["172.21.0.1", API], ["172.21.0.1", HTTP], [peer_ip, 8000], [PYPI, 443], ["pypi.org", 443]]
        open_sb = modal.Sandbox.create(app=app, image=image)
        out["open"] = reach(open_sb, *targets)
        to_host = modal.Sandbox.create(app=app, image=image, outbound_cidr_allowlist=["172.21.0.1/32"])
        out["to_host"] = reach(to_host, *targets)
        # an allowlisted sandbox still passes its readiness probe (its own loopback stays open)
        elsewhere = modal.Sandbox.create("python3", "-m", "http.server", "8000", app=app, image=image,
                                         outbound_cidr_allowlist=[PYPI + "/32", "198.51.100.0/24"],
                                         readiness_probe=modal.Probe.with_tcp(8000))
        elsewhere.wait_until_ready(timeout=60)
        out["elsewhere"] = reach(elsewhere, *targets)
        nothing = modal.Sandbox.create(app=app, image=image, outbound_cidr_allowlist=[])
        out["nothing"] = reach(nothing, *targets)
        for sb in (peer, open_sb, to_host, elsewhere, nothing):
            sb.terminate()
        out["peer"] = peer_ip
        print(json.dumps(out))
        """,
    )
    api, http, peer = f"172.21.0.1:{berth_oci.port}", f"172.21.0.1:{berth_oci.port + 1}", f"{seen['peer']}:8000"
    ip, name = f"{pypi}:443", "pypi.org:443"
    # Open: its server's ports and the internet; never another sandbox (the host's rules).
    assert [_outcome(seen["open"], t) for t in (api, http, ip, name)] == ["connected"] * 4, seen["open"]
    # The bridge address only: the server's ports, nothing on the internet, no DNS.
    to_host = seen["to_host"]
    assert _outcome(to_host, api) == _outcome(to_host, http) == "connected", to_host
    assert _outcome(to_host, ip) == "refused" and _outcome(to_host, name) == "unresolved", to_host
    # The internet address only: that address, but not the control plane; no DNS.
    elsewhere = seen["elsewhere"]
    assert _outcome(elsewhere, ip) == "connected", elsewhere
    assert _outcome(elsewhere, api) == _outcome(elsewhere, http) == "refused", elsewhere
    assert _outcome(elsewhere, name) == "unresolved", elsewhere
    # An empty list: nothing at all.
    nothing = seen["nothing"]
    assert [_outcome(nothing, t) for t in (api, http, ip, peer)] == ["refused"] * 4, nothing
    for case in ("open", "to_host", "elsewhere", "nothing"):
        assert _outcome(seen[case], peer) != "connected", (case, seen[case])  # other sandboxes: never
        for target, (what, took) in seen[case].items():
            if what == "refused":
                assert took < 2, (case, target, took)  # rejected at once, not dropped


def test_domain_allowlist_resolves_and_reaches_only_the_listed_names(berth_oci: BerthServer) -> None:
    pypi = _pypi_address()
    seen = run(
        berth_oci,
        "sb-egress-domain",
        f"""
        sb = modal.Sandbox.create(app=app, image=image, outbound_domain_allowlist=["PyPI.org."])
        seen = reach(sb, ["pypi.org", 443], [{pypi!r}, 443], ["example.com", 443], ["172.21.0.1", HTTP],
                     ["1.1.1.1", 443])
        hosts = sb.exec("cat", "/etc/hosts").stdout.read()
        sb.terminate()
        print(json.dumps({{"seen": seen, "hosts": hosts}}))
        """,
    )
    reached = seen["seen"]
    assert _outcome(reached, "pypi.org:443") == "connected", reached
    assert _outcome(reached, f"{pypi}:443") == "connected", reached  # the name's address, by address too
    assert _outcome(reached, "example.com:443") == "unresolved", reached  # no DNS for names not listed
    assert _outcome(reached, f"172.21.0.1:{berth_oci.port + 1}") == "refused", reached  # not the control plane
    assert _outcome(reached, "1.1.1.1:443") == "refused", reached
    assert f"{pypi}\tpypi.org" in seen["hosts"], seen["hosts"]


def test_allowlists_berth_cannot_honour_are_refused_by_name(berth_oci: BerthServer, berth: BerthServer) -> None:
    body = """
        out = {}
        for name, kwargs in {"wildcard": {"outbound_domain_allowlist": ["*.example.com"]},
                             "bad_cidr": {"outbound_cidr_allowlist": ["10.0.0.0/33"]},
                             "unresolved": {"outbound_domain_allowlist": ["no-such-name.invalid"]},
                             "allowed": {"outbound_cidr_allowlist": ["198.51.100.0/24"]}}.items():
            try:
                sb = modal.Sandbox.create(app=app, image=image, **kwargs)
                sb.terminate()
                out[name] = "created"
            except Exception as exc:
                out[name] = [type(exc).__name__, str(exc)]
        if out["allowed"] == "created":  # changing a running sandbox's allowlist is not served yet
            sb = modal.Sandbox.create(app=app, image=image, outbound_cidr_allowlist=["198.51.100.0/24"])
            try:
                sb._experimental_set_outbound_network_policy(outbound_cidr_allowlist=["203.0.113.0/24"])
                out["set_policy"] = "changed"
            except Exception as exc:
                out["set_policy"] = [type(exc).__name__, str(exc)]
            sb.terminate()
        print(json.dumps(out))
        """
    oci = run(berth_oci, "sb-egress-refused", body)
    assert oci["wildcard"][0] == "InvalidError" and "outbound_domain_allowlist" in oci["wildcard"][1], oci
    assert oci["bad_cidr"][0] == "InvalidError" and "outbound_cidr_allowlist" in oci["bad_cidr"][1], oci
    assert oci["unresolved"][0] == "InvalidError" and "no-such-name.invalid" in oci["unresolved"][1], oci
    assert oci["allowed"] == "created", oci
    assert oci["set_policy"][0] == "InvalidError", oci
    assert "_experimental_set_outbound_network_policy" in oci["set_policy"][1], oci
    process = run(berth, "sb-egress-process", body)  # the process runtime: sandboxes on the host's network
    assert process["allowed"][0] == "InvalidError" and "outbound_cidr_allowlist" in process["allowed"][1], process


# Root in the sandbox asks the kernel (nf_tables over netlink, as `nft`/iptables-nft would) to delete the
# table that holds its allowlist; prints the kernel's answer (0 or -errno).
LIFT = r"""
import socket, struct
NFNL_SUBSYS_NFTABLES, NFT_MSG_DELTABLE, NLM_F_REQUEST, NLM_F_ACK = 10, 2, 1, 4
def message(kind, flags, seq, family, res_id, payload=b""):
    body = struct.pack("=BBH", family, 0, socket.htons(res_id)) + payload
    return struct.pack("=IHHII", 16 + len(body), kind, flags, seq, 0) + body
name = b"filter\0" + b"\0"
table = struct.pack("=HH", 4 + 7, 1) + name
batch = (message(0x10, NLM_F_REQUEST, 1, socket.AF_UNSPEC, NFNL_SUBSYS_NFTABLES)
         + message((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_DELTABLE, NLM_F_REQUEST | NLM_F_ACK, 2, socket.AF_INET, 0,
                   table)
         + message(0x11, NLM_F_REQUEST, 3, socket.AF_UNSPEC, NFNL_SUBSYS_NFTABLES))
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)  # NETLINK_NETFILTER
s.bind((0, 0))
s.send(batch)
reply = s.recv(65536)
kind = struct.unpack_from("=H", reply, 4)[0]
print(struct.unpack_from("=i", reply, 16)[0] if kind == 2 else "no error message")
"""


def test_a_sandbox_cannot_lift_its_own_allowlist(berth_oci: BerthServer) -> None:
    seen = run(
        berth_oci,
        "sb-egress-lift",
        f"""
        sb = modal.Sandbox.create(app=app, image=image, outbound_cidr_allowlist=["198.51.100.0/24"])
        lift = sb.exec("python3", "-c", {LIFT!r})
        answer = lift.stdout.read().strip() + lift.stderr.read()
        after = reach(sb, ["172.21.0.1", HTTP])
        sb.terminate()
        print(json.dumps({{"answer": answer, "after": after}}))
        """,
    )
    assert seen["answer"] == "-1", seen  # -EPERM: no CAP_NET_ADMIN over its network namespace
    assert _outcome(seen["after"], f"172.21.0.1:{berth_oci.port + 1}") == "refused", seen
