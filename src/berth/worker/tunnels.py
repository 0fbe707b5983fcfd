"""Tunnels: ports of a task's container exposed on its worker's host (a sandbox's encrypted_ports,
unencrypted_ports and h2_ports; modal.forward() inside a function). Each tunnel is a listener on the worker
that carries TCP to one fixed address: its own container's address on the bridge and the one port it was
opened for, so a tunnel never reaches another port or another container.

- TLS is terminated here, with a certificate from Berth's CA for the address clients are told (the bytes
  reach the container in plain, as Modal's relays do). h2 tunnels offer `h2` (then `http/1.1`) in ALPN and pass
  what the client sends through unchanged, so a client that picks h2 speaks HTTP/2 with prior knowledge (h2c)
  to the server in the container.
- An unencrypted tunnel also gets a plain TCP listener, as Modal's `forward(unencrypted=True)` does.
- `allowed_cidrs` (inbound_cidr_allowlist) is checked against the peer before any byte is read or the TLS
  handshake starts; any other peer is reset at once.
- Every listener of a task closes when the task exits (the worker calls close_task), or one port's on
  TunnelStop; their open connections are cut with them."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import ssl
import struct
from dataclasses import dataclass, field
from pathlib import Path

from berth.domain.spec import TunnelAddress, TunnelRequest
from berth.errors import AlreadyExists, InvalidArgument

log = logging.getLogger("berth.worker.tunnels")

_CHUNK = 65536
_CONNECT_S = 10.0

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_cidrs(cidrs: tuple[str, ...] | list[str]) -> list[Network]:
    """inbound_cidr_allowlist entries as networks (a bare address is a /32 or /128); InvalidArgument names a bad one."""
    networks: list[Network] = []
    for cidr in cidrs:
        try:
            networks.append(ipaddress.ip_network(cidr.strip(), strict=False))
        except ValueError as exc:
            raise InvalidArgument(f"inbound_cidr_allowlist: {cidr!r} is not a CIDR block ({exc})") from exc
    return networks


def _allowed(peer: str, networks: list[Network]) -> bool:
    if not networks:
        return True
    try:
        addr = ipaddress.ip_address(peer.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return any(addr.version == net.version and addr in net for net in networks)


@dataclass
class _Tunnel:
    task_id: str
    target: tuple[str, int]
    networks: list[Network]
    tls: ssl.SSLContext
    servers: list[asyncio.Server] = field(default_factory=list)
    conns: set[asyncio.Task[None]] = field(default_factory=set)

    async def close(self) -> None:
        for server in self.servers:
            server.close()
        for conn in list(self.conns):
            conn.cancel()
        await asyncio.gather(*self.conns, return_exceptions=True)
        for server in self.servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)


class Tunnels:
    """The tunnels of one worker. `listen_host` is where listeners bind, `advertise` the host clients are told;
    the certificate must name `advertise`."""

    def __init__(self, listen_host: str, advertise: str, cert: Path, key: Path) -> None:
        self._listen = listen_host
        self._advertise = advertise
        self.use_certificate(cert, key)
        self._open: dict[tuple[str, int], _Tunnel] = {}

    def use_certificate(self, cert: Path, key: Path) -> None:
        self._tls = self._context(cert, key, [])
        self._tls_h2 = self._context(cert, key, ["h2", "http/1.1"])

    @staticmethod
    def _context(cert: Path, key: Path, alpn: list[str]) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(cert, key)
        if alpn:
            ctx.set_alpn_protocols(alpn)
        return ctx

    async def open(self, task_id: str, target_host: str, request: TunnelRequest) -> TunnelAddress:
        """Listen for one port of the task's container at `target_host`; AlreadyExists when it is open already."""
        if not 1 <= request.port <= 65535:
            raise InvalidArgument(f"Invalid port number {request.port}")
        key = (task_id, request.port)
        if key in self._open:
            raise AlreadyExists(f"Port {request.port} is already forwarded")
        tunnel = _Tunnel(
            task_id,
            (target_host, request.port),
            parse_cidrs(request.allowed_cidrs),
            self._tls_h2 if request.h2 else self._tls,
        )
        self._open[key] = tunnel
        try:
            tls_port = await self._listen_on(tunnel, encrypted=True)
            plain_port = await self._listen_on(tunnel, encrypted=False) if request.unencrypted else 0
        except BaseException:
            self._open.pop(key, None)
            await tunnel.close()
            raise
        log.info("task %s: port %d tunnelled at %s:%d", task_id, request.port, self._advertise, tls_port)
        return TunnelAddress(
            request.port,
            self._advertise,
            tls_port,
            self._advertise if plain_port else "",
            plain_port,
        )

    async def _listen_on(self, tunnel: _Tunnel, encrypted: bool) -> int:
        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            conn = asyncio.current_task()
            assert conn is not None
            tunnel.conns.add(conn)
            try:
                await self._serve(tunnel, reader, writer, encrypted)
            finally:
                tunnel.conns.discard(conn)

        server = await asyncio.start_server(accept, self._listen, 0)
        tunnel.servers.append(server)
        port: int = server.sockets[0].getsockname()[1]
        return port

    async def _serve(
        self, tunnel: _Tunnel, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, encrypted: bool
    ) -> None:
        peer = writer.get_extra_info("peername")
        if not _allowed(str(peer[0]) if peer else "", tunnel.networks):
            _reset(writer)  # outside inbound_cidr_allowlist: before any byte is read or the handshake starts
            return
        upstream: asyncio.StreamWriter | None = None
        try:
            if encrypted:
                await writer.start_tls(tunnel.tls)
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(*tunnel.target), _CONNECT_S)
            upstream = up_writer
            pipes = [asyncio.ensure_future(_pipe(reader, up_writer)), asyncio.ensure_future(_pipe(up_reader, writer))]
            try:
                await asyncio.gather(*pipes)
            finally:  # one direction failed (or the tunnel closes): end the other too
                for pipe in pipes:
                    pipe.cancel()
                await asyncio.gather(*pipes, return_exceptions=True)
        except (OSError, ssl.SSLError, TimeoutError, asyncio.IncompleteReadError):
            pass  # the client or the container went away, or nothing listens on the port yet
        finally:
            for w in (writer, upstream):
                if w is not None:
                    w.close()

    async def close(self, task_id: str, port: int) -> bool:
        """TunnelStop: whether the port was open."""
        tunnel = self._open.pop((task_id, port), None)
        if tunnel is None:
            return False
        await tunnel.close()
        return True

    async def close_task(self, task_id: str) -> None:
        for key in [k for k in self._open if k[0] == task_id]:
            await self.close(*key)

    async def close_all(self) -> None:
        for key in list(self._open):
            await self.close(*key)

    def ports(self, task_id: str) -> list[int]:
        return sorted(p for t, p in self._open if t == task_id)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), so the peer sees the refusal at once."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """One direction; at its end the other side is half-closed where the transport can (TLS cannot)."""
    try:
        while chunk := await reader.read(_CHUNK):
            writer.write(chunk)
            await writer.drain()
    finally:
        if writer.can_write_eof():
            with contextlib.suppress(OSError):
                writer.write_eof()
        else:
            writer.close()


class NoTunnels:
    """A worker without a tunnel certificate (none was handed to it): tunnels are refused by name."""

    async def open(self, task_id: str, target_host: str, request: TunnelRequest) -> TunnelAddress:
        raise InvalidArgument(
            "Tunnels (encrypted_ports, unencrypted_ports, h2_ports, modal.forward) are not available on this "
            "worker: it has no certificate from Berth's CA to serve them with"
        )

    async def close(self, task_id: str, port: int) -> bool:
        return False

    async def close_task(self, task_id: str) -> None:
        return None

    async def close_all(self) -> None:
        return None
