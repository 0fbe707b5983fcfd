"""A function whose outbound connections leave from a proxy's address, and one without a proxy: each connects to
a server and returns the address that server saw."""

import socket

import modal

app = modal.App("e2e-proxied")


def _seen_by(host: str, port: int) -> str:
    with socket.create_connection((host, port), timeout=10) as conn:
        return conn.recv(100).decode()


@app.function(proxy=modal.Proxy.from_name("e2e-px"))
def via_proxy(host: str, port: int) -> str:
    return _seen_by(host, port)


@app.function()
def direct(host: str, port: int) -> str:
    return _seen_by(host, port)


missing = modal.App("e2e-proxy-missing")


@missing.function(proxy=modal.Proxy.from_name("no-such-proxy"))
def unreachable() -> None:
    pass
