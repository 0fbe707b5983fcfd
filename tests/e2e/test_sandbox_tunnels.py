"""Tunnels through the stock client on crun: a sandbox's encrypted_ports (https with a certificate from Berth's
CA), unencrypted_ports (plain TCP), h2_ports (ALPN h2, passed through), inbound_cidr_allowlist, listeners
that close with the sandbox, and modal.forward() inside a function."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from tests.e2e.conftest import BerthServer, _free_port, last_json, python, sdk

HEAD = """
import json, socket, ssl, time, urllib.error, urllib.request, modal
from modal.exception import *
app = modal.App.lookup({app!r}, create_if_missing=True)
image = modal.Image.debian_slim()
CA = {ca!r}

def tls_context(alpn=None):
    ctx = ssl.create_default_context(cafile=CA)
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx

def get(url, timeout=90):
    # Retried while the server in the sandbox starts (the tunnel then closes the connection); a certificate
    # that does not verify is not retried.
    deadline = time.monotonic() + timeout
    while True:
        try:
            return urllib.request.urlopen(url, context=tls_context(), timeout=10).read().decode()
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, ssl.SSLCertVerificationError) or time.monotonic() > deadline:
                raise
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.3)

def tcp_get(host, port):
    data = b""
    try:  # the allowlist resets a peer outside it: at connect, at the send or at the read, as the race goes
        with socket.create_connection((host, port), timeout=10) as s:
            s.sendall(b"GET / HTTP/1.0\\r\\nHost: x\\r\\n\\r\\n")
            while chunk := s.recv(65536):
                data += chunk
    except (ConnectionResetError, BrokenPipeError):
        pass
    return data.decode(errors="replace")

def handshake(host, port):
    # "ok" when a TLS handshake completes, else the error's name (a reset before it: the allowlist).
    try:
        with socket.create_connection((host, port), timeout=10) as raw:
            with tls_context().wrap_socket(raw, server_hostname=host):
                return "ok"
    except (OSError, ssl.SSLError) as exc:
        return type(exc).__name__

def refuses(host, port):
    try:
        socket.create_connection((host, port), timeout=5).close()
        return False
    except ConnectionRefusedError:
        return True

def wait_listening(sb, port):
    # From inside the sandbox: its server accepts connections.
    probe = (f"import socket,time\\nwhile True:\\n  try: socket.create_connection(('127.0.0.1',{{port}}),1); break"
             "\\n  except OSError: time.sleep(0.2)")
    assert sb.exec("python3", "-c", probe, timeout=60).wait() == 0

def serve(*dirs):
    # A sandbox command: python's http.server on each (port, text) pair, each from its own directory.
    # Relative to its working directory: on the process runtime that is its task directory, not the host's root.
    parts = [f"mkdir -p www/{{p}} && echo {{text}} > www/{{p}}/index.html && "
             f"python3 -m http.server {{p}} -d www/{{p}} &" for p, text in dirs]
    return ("bash", "-c", " ".join(parts) + " wait")
"""


def run(server: BerthServer, app: str, body: str, timeout: float = 300) -> dict:  # type: ignore[type-arg]
    ca = str(server.data_dir / "tls" / "ca.pem")
    return last_json(sdk(server, HEAD.format(app=app, ca=ca) + textwrap.dedent(body), timeout=timeout))


def test_encrypted_port_is_https_from_berths_ca_and_reaches_only_its_own_port_and_sandbox(
    berth_oci: BerthServer,
) -> None:
    seen = run(
        berth_oci,
        "sb-tunnels-https",
        """
        a = modal.Sandbox.create(*serve((8000, "a-8000"), (8001, "a-8001")), encrypted_ports=[8000],
                                 app=app, image=image)
        b = modal.Sandbox.create(*serve((8000, "b-8000")), encrypted_ports=[8000], app=app, image=image)
        ta, tb = a.tunnels(), b.tunnels()
        url = ta[8000].url
        out = {"ports": sorted(ta), "url": url, "a": get(url), "b": get(tb[8000].url),
               "tls": list(ta[8000].tls_socket), "other": tb[8000].url}
        import subprocess  # curl offers h2 and http/1.1; a plain encrypted port picks neither, so HTTP/1.1
        out["curl"] = subprocess.run(["curl", "-sS", "--cacert", CA, url], capture_output=True, text=True).stdout
        try:
            ta[8000].tcp_socket
        except InvalidError as exc:
            out["tcp"] = type(exc).__name__
        # A fresh handle asks SandboxGetTunnelsV2 rather than using the tunnels create returned.
        out["from_id"] = modal.Sandbox.from_id(a.object_id).tunnels()[8000].url
        a.terminate(); b.terminate()
        print(json.dumps(out))
        """,
    )
    assert seen["ports"] == [8000]  # 8001 is not exposed
    assert seen["url"].startswith("https://127.0.0.1:") and seen["tls"][0] == "127.0.0.1"
    assert seen["a"].strip() == "a-8000" and seen["b"].strip() == "b-8000" and seen["curl"].strip() == "a-8000"
    assert seen["other"] != seen["url"] and seen["from_id"] == seen["url"]
    assert seen["tcp"] == "InvalidError"  # an encrypted port has no plain TCP socket


def test_unencrypted_port_gives_a_plain_tcp_socket_and_h2_port_negotiates_h2_through_to_the_sandbox(
    berth_oci: BerthServer,
) -> None:
    echo = (
        "import socket\ns=socket.create_server(('0.0.0.0',9000))\n"
        "while True:\n  c,_=s.accept(); c.sendall(c.recv(4096)); c.close()"
    )
    seen = run(
        berth_oci,
        "sb-tunnels-tcp",
        f"""
        sb = modal.Sandbox.create(*serve((8000, "plain")), unencrypted_ports=[8000], app=app, image=image)
        h2 = modal.Sandbox.create("python3", "-c", {echo!r}, h2_ports=[9000], app=app, image=image)
        t = sb.tunnels()[8000]
        host, port = t.tcp_socket
        tls_body = get(f"https://{{t.host}}:{{t.port}}/")  # an unencrypted port has a TLS address too, as on Modal
        plain = tcp_get(host, port)
        wait_listening(h2, 9000)
        th = h2.tunnels()[9000]
        preface = b"PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n"
        with socket.create_connection((th.host, th.port), timeout=10) as raw:
            with tls_context(["h2", "http/1.1"]).wrap_socket(raw, server_hostname=th.host) as s:
                alpn = s.selected_alpn_protocol()
                s.sendall(preface)
                echoed = s.recv(4096)
        sb.terminate(); h2.terminate()
        print(json.dumps({{"host": host, "port": port, "tls_port": t.port, "plain": plain, "tls_body": tls_body,
                          "alpn": alpn, "echoed": echoed == preface}}))
        """,
    )
    assert seen["host"] == "127.0.0.1" and seen["port"] != seen["tls_port"]
    assert seen["plain"].startswith("HTTP/1.0 200") and seen["plain"].rstrip().endswith("plain")
    assert seen["tls_body"].strip() == "plain"
    assert seen["alpn"] == "h2" and seen["echoed"]


def test_inbound_cidr_allowlist_resets_peers_outside_it(berth_oci: BerthServer) -> None:
    seen = run(
        berth_oci,
        "sb-tunnels-cidr",
        """
        shut = modal.Sandbox.create(*serve((8000, "shut")), unencrypted_ports=[8000], app=app, image=image,
                                    inbound_cidr_allowlist=["10.9.0.0/16", "192.0.2.7/32"])
        open_ = modal.Sandbox.create(*serve((8000, "open")), encrypted_ports=[8000], app=app, image=image,
                                     inbound_cidr_allowlist=["10.9.0.0/16", "127.0.0.0/8"])
        wait_listening(shut, 8000)
        t = shut.tunnels()[8000]
        out = {"shut_tls": handshake(t.host, t.port), "shut_tcp": tcp_get(*t.tcp_socket),
               "open": get(open_.tunnels()[8000].url)}
        try:
            modal.Sandbox.create(encrypted_ports=[8000], inbound_cidr_allowlist=["not-a-cidr"], app=app, image=image)
        except InvalidError as exc:
            out["bad"] = str(exc)
        shut.terminate(); open_.terminate()
        print(json.dumps(out))
        """,
    )
    assert seen["shut_tls"] != "ok" and seen["shut_tcp"] == ""
    assert seen["open"].strip() == "open"
    assert "inbound_cidr_allowlist" in seen["bad"] and "not-a-cidr" in seen["bad"]


def test_tunnels_stop_accepting_when_the_sandbox_is_terminated_or_exits(berth_oci: BerthServer) -> None:
    seen = run(
        berth_oci,
        "sb-tunnels-teardown",
        """
        sb = modal.Sandbox.create(*serve((8000, "up")), unencrypted_ports=[8000], app=app, image=image)
        t = sb.tunnels()[8000]
        before = get(t.url)
        sb.terminate()
        sb.wait(raise_on_termination=False)
        short = modal.Sandbox.create("sleep", "3", encrypted_ports=[8000], app=app, image=image)
        ts = short.tunnels()[8000]
        short_open = not refuses(ts.host, ts.port)
        short.wait()
        print(json.dumps({"before": before, "tls": refuses(t.host, t.port), "tcp": refuses(*t.tcp_socket),
                          "short_open": short_open, "short_after": refuses(ts.host, ts.port),
                          "after_exit": len(modal.Sandbox.from_id(short.object_id).tunnels())}))
        """,
    )
    assert seen["before"].strip() == "up"
    assert seen["tls"] and seen["tcp"]
    assert seen["short_open"] and seen["short_after"] and seen["after_exit"] == 0


FORWARD = """
import json, socket, ssl, sys, urllib.request
sys.path.insert(0, ".")
import modal
from tunnel_app import app, expose
ctx = ssl.create_default_context(cafile=sys.argv[1])
with app.run(), modal.Queue.ephemeral() as q:
    call = expose.spawn(q)
    info = q.get(timeout=240)
    body = urllib.request.urlopen(info["url"], context=ctx, timeout=30).read().decode()
    with socket.create_connection(tuple(info["tcp"]), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
        plain = b""
        while chunk := s.recv(65536):
            plain += chunk
    q.put("done", partition="done")
    again = call.get(timeout=120)
    host, port = info["url"].removeprefix("https://").split(":")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
        closed = False
    except ConnectionRefusedError:
        closed = True
    print(json.dumps({"url": info["url"], "body": body, "plain": plain.decode(), "again": again,
                      "closed": closed}))
"""


def test_modal_forward_in_a_function_exposes_its_port_until_the_context_exits(berth_oci: BerthServer) -> None:
    ca = str(berth_oci.data_dir / "tls" / "ca.pem")
    result = python(berth_oci, "-c", FORWARD, ca, timeout=600)
    assert result.returncode == 0, result.output
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["url"].startswith("https://127.0.0.1:")
    assert seen["body"] == "forwarded from the function\n"
    assert seen["plain"].endswith("forwarded from the function\n")
    assert "already forwarded" in seen["again"]
    assert seen["closed"]  # TunnelStop closed the listener


def test_a_sandbox_on_a_remote_worker_gets_tunnels_with_a_certificate_from_the_servers_ca(tmp_path: Path) -> None:
    from tests.e2e.test_cluster import start_control_plane

    cluster = start_control_plane(tmp_path)
    try:
        cluster.add_worker("w1")
        cluster.wait_joined("w1")
        port = _free_port()  # the process runtime shares the host's network
        seen = run(
            cluster.server,
            "sb-tunnels-remote",
            f"""
            sb = modal.Sandbox.create(*serve(({port}, "remote")), encrypted_ports=[{port}], app=app, image=image)
            t = sb.tunnels()[{port}]
            body = get(t.url)
            sb.terminate()
            sb.wait(raise_on_termination=False)
            print(json.dumps({{"url": t.url, "body": body, "closed": refuses(t.host, t.port)}}))
            """,
        )
    finally:
        cluster.stop()
    assert seen["url"].startswith("https://127.0.0.1:") and seen["body"].strip() == "remote"
    assert seen["closed"]
