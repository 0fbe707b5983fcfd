"""Listening sockets that outlive a server killed mid-work, so that its restart is invisible to clients.

A server killed with `kill -9` and started again two seconds later lost nothing, but its clients saw
"Connect call failed" in between: the stock client reconnects its log stream at once and gives up on a
refused connection. So the server's client-facing sockets (gRPC and HTTP on its host and port) are held
by a small keeper process of their own, in its own session. While no server runs, connections wait in the
sockets' backlog instead of being refused; the next server of the same data dir adopts the very sockets
(passed over a unix socket, SCM_RIGHTS) and serves what waited.

The keeper lives as long as a server holds a connection to it. When that connection ends without a
release (the server died), the keeper waits BERTH_RESTART_GRACE_S (30 s) for a new server, then closes the
sockets, so clients of a server that does not come back are refused as before. A clean shutdown releases
them at once. A server that asks for other addresses (another port) has the keeper close its sockets and
binds its own."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger("berth.listeners")

GRACE_S = float(os.environ.get("BERTH_RESTART_GRACE_S", "30"))
_MAX_UNIX_PATH = 100
Addr = tuple[str, int]


def keeper_path(data_dir: Path) -> Path:
    return data_dir / "listeners.sock"


class Listeners:
    """This server's sockets and its link to their keeper (None where there is none)."""

    def __init__(self, sockets: list[socket.socket], link: socket.socket | None) -> None:
        self.sockets = sockets
        self._link = link

    def release(self) -> None:
        """A clean shutdown: the keeper closes the sockets and exits, so the ports are free again."""
        if self._link is not None:
            with contextlib.suppress(OSError):
                self._link.sendall(b'{"op": "release"}\n')
                self._link.recv(16)
            self._link.close()
            self._link = None


def take(data_dir: Path, addrs: list[Addr]) -> Listeners:
    """Sockets listening on `addrs`: the ones a previous server of this data dir left with its keeper, or
    new ones, handed to a new keeper. Without a usable keeper path (port 0, a path too long for a unix
    socket), plain sockets."""
    path = keeper_path(data_dir)
    if any(port == 0 for _, port in addrs) or len(str(path)) > _MAX_UNIX_PATH:
        return Listeners([_bind(a) for a in addrs], None)
    adopted = _adopt(path, addrs)
    if adopted is not None:
        log.info("adopted the listening sockets a previous server left (%s)", ", ".join(f"{h}:{p}" for h, p in addrs))
        return adopted
    sockets = [_bind(a) for a in addrs]
    return Listeners(sockets, _start_keeper(path, sockets, addrs))


def _bind(addr: Addr) -> socket.socket:
    host, port = addr
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP by name: asyncio sets TCP_NODELAY only on connections accepted from a socket whose proto says
    # TCP, and a socket made with proto 0 left Nagle on, so every reply waited ~40 ms on the peer's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    deadline = time.monotonic() + 5
    while True:
        try:
            sock.bind((host, port))
            break
        except OSError:
            if time.monotonic() > deadline:  # a keeper told to let go may take a moment to exit
                sock.close()
                raise
            time.sleep(0.05)
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def _connect(path: Path) -> socket.socket | None:
    link = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        link.connect(str(path))
        return link
    except OSError:
        link.close()
        return None


def _adopt(path: Path, addrs: list[Addr]) -> Listeners | None:
    link = _connect(path)
    if link is None:
        return None
    link.settimeout(5)
    try:
        link.sendall(json.dumps({"op": "adopt", "addrs": addrs}).encode() + b"\n")
        msg, fds, _, _ = socket.recv_fds(link, 64, len(addrs))
    except OSError:
        link.close()
        return None
    if msg.strip() != b"ok" or len(fds) != len(addrs):
        for fd in fds:
            os.close(fd)
        link.close()
        return None  # another set of addresses: the keeper lets go of its sockets and exits
    link.settimeout(None)
    sockets = [socket.socket(fileno=fd) for fd in fds]
    for s in sockets:
        s.setblocking(False)
    return Listeners(sockets, link)


def _start_keeper(path: Path, sockets: list[socket.socket], addrs: list[Addr]) -> socket.socket | None:
    path.unlink(missing_ok=True)
    fds = [s.fileno() for s in sockets]
    argv = [sys.executable, "-m", "berth.listeners", str(path), json.dumps(addrs), json.dumps(fds), str(GRACE_S)]
    subprocess.Popen(
        argv,
        pass_fds=fds,
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        link = _connect(path)
        if link is not None:
            link.sendall(b'{"op": "attach"}\n')
            return link
        time.sleep(0.02)
    log.warning("the listening sockets' keeper did not start: a restart will refuse clients meanwhile")
    return None


# --- the keeper process -----------------------------------------------------------------------------------


def _keep(path: Path, addrs: list[Addr], fds: list[int], grace_s: float) -> None:
    control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    control.bind(str(path))
    inode = path.stat().st_ino
    try:
        os.chmod(path, 0o600)
        control.listen(8)
        _serve(control, path, addrs, fds, grace_s)
    finally:
        with contextlib.suppress(OSError):
            if path.stat().st_ino == inode:  # not a newer keeper's
                path.unlink()


def _serve(control: socket.socket, path: Path, addrs: list[Addr], fds: list[int], grace_s: float) -> None:
    servers: dict[socket.socket, bytes] = {}  # connected servers -> what they sent so far
    orphaned_at: float | None = time.monotonic()  # until the server that started it attaches
    while True:
        if not servers and orphaned_at is not None and time.monotonic() > orphaned_at + grace_s:
            return
        if not path.parent.exists():
            return
        readable, _, _ = select.select([control, *servers], [], [], 1.0)
        for sock in readable:
            if sock is control:
                conn, _ = control.accept()
                servers[conn] = b""
                continue
            data = sock.recv(4096)
            if not data:  # that server is gone: wait for the next one
                del servers[sock]
                sock.close()
                if not servers:
                    orphaned_at = time.monotonic()
                continue
            servers[sock] += data
            while b"\n" in servers[sock]:
                line, _, servers[sock] = servers[sock].partition(b"\n")
                if not _answer(sock, json.loads(line), addrs, fds):
                    return
                orphaned_at = None


def _answer(sock: socket.socket, op: dict[str, object], addrs: list[Addr], fds: list[int]) -> bool:
    """Serves one request of a server; False when the keeper is done (released, or other addresses asked)."""
    if op["op"] == "adopt":
        if [tuple(a) for a in op["addrs"]] != [tuple(a) for a in addrs]:  # type: ignore[attr-defined]
            sock.sendall(b"mismatch")
            return False
        socket.send_fds(sock, [b"ok"], fds)
    elif op["op"] == "release":
        with contextlib.suppress(OSError):
            sock.sendall(b"bye")
        return False
    return True  # "attach": a server holds the link


def main(argv: list[str]) -> None:
    path, addrs, fds, grace = Path(argv[0]), json.loads(argv[1]), json.loads(argv[2]), float(argv[3])
    _keep(path, [(h, p) for h, p in addrs], fds, grace)


if __name__ == "__main__":
    main(sys.argv[1:])
