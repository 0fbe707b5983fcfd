"""The worker's tunnels against a plain TCP server on loopback: TLS from Berth's CA, ALPN for h2, the inbound
allowlist checked before the handshake, one listener per port, and listeners that stop accepting on close."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from modal_proto import api_pb2

from berth.domain.spec import TunnelRequest
from berth.errors import AlreadyExists, InvalidArgument
from berth.scheduling.sandboxes import SandboxRecord
from berth.scheduling.tunnels import requested
from berth.tls import issue_server_cert
from berth.worker.tunnels import Tunnels


@pytest.fixture
async def echo() -> AsyncIterator[int]:
    """A server that answers each connection with its first line, uppercased."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write((await reader.readline()).upper())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()


def _tunnels(tmp_path: Path) -> tuple[Tunnels, ssl.SSLContext]:
    cert, key = issue_server_cert(tmp_path / "tls", ["127.0.0.1"], "tunnels")
    client = ssl.create_default_context(cafile=str(tmp_path / "tls" / "ca.pem"))
    return Tunnels("127.0.0.1", "127.0.0.1", cert, key), client


async def _ask(port: int, tls: ssl.SSLContext | None) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls)
    writer.write(b"hello\n")
    await writer.drain()
    try:
        return await reader.read()
    finally:
        writer.close()


async def test_a_tunnel_terminates_tls_with_the_cas_certificate_and_also_serves_plain_tcp_when_unencrypted(
    tmp_path: Path, echo: int
) -> None:
    tunnels, client = _tunnels(tmp_path)
    address = await tunnels.open("ta-1", "127.0.0.1", TunnelRequest(echo, unencrypted=True))
    assert address.host == "127.0.0.1" and address.container_port == echo
    assert await _ask(address.port, client) == b"HELLO\n"
    assert await _ask(address.unencrypted_port, None) == b"HELLO\n"
    await tunnels.close_all()


async def test_an_h2_tunnel_offers_h2_in_alpn(tmp_path: Path, echo: int) -> None:
    tunnels, client = _tunnels(tmp_path)
    client.set_alpn_protocols(["h2", "http/1.1"])
    address = await tunnels.open("ta-1", "127.0.0.1", TunnelRequest(echo, h2=True))
    _, writer = await asyncio.open_connection("127.0.0.1", address.port, ssl=client)
    assert writer.get_extra_info("ssl_object").selected_alpn_protocol() == "h2"
    writer.close()
    await tunnels.close_all()


async def test_a_peer_outside_the_inbound_allowlist_is_reset_before_the_handshake(tmp_path: Path, echo: int) -> None:
    tunnels, client = _tunnels(tmp_path)
    shut = await tunnels.open("ta-1", "127.0.0.1", TunnelRequest(echo, True, allowed_cidrs=("10.0.0.0/8",)))
    opened = await tunnels.open("ta-2", "127.0.0.1", TunnelRequest(echo, allowed_cidrs=("127.0.0.0/8",)))
    with pytest.raises((ConnectionResetError, ssl.SSLError)):
        await _ask(shut.port, client)
    with pytest.raises((ConnectionResetError, BrokenPipeError)):
        await _ask(shut.unencrypted_port, None)
    assert await _ask(opened.port, client) == b"HELLO\n"
    await tunnels.close_all()


async def test_a_port_is_tunnelled_once_per_task_and_stops_accepting_when_its_task_closes(
    tmp_path: Path, echo: int
) -> None:
    tunnels, client = _tunnels(tmp_path)
    address = await tunnels.open("ta-1", "127.0.0.1", TunnelRequest(echo))
    with pytest.raises(AlreadyExists):
        await tunnels.open("ta-1", "127.0.0.1", TunnelRequest(echo))
    await tunnels.close_task("ta-1")
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", address.port)
    assert not await tunnels.close("ta-1", echo)


def test_a_sandbox_definition_asks_one_tunnel_per_port_with_its_allowlist_and_bad_cidrs_are_refused() -> None:
    definition = api_pb2.Sandbox(
        open_ports=api_pb2.PortSpecs(
            ports=[
                api_pb2.PortSpec(port=80),
                api_pb2.PortSpec(port=81, unencrypted=True),
                api_pb2.PortSpec(port=82, tunnel_type=api_pb2.TUNNEL_TYPE_H2),
            ]
        ),
        inbound_cidr_allowlist=["10.0.0.0/8"],
    )
    assert requested(definition) == [
        TunnelRequest(80, False, False, ("10.0.0.0/8",)),
        TunnelRequest(81, True, False, ("10.0.0.0/8",)),
        TunnelRequest(82, False, True, ("10.0.0.0/8",)),
    ]
    definition.inbound_cidr_allowlist.append("10.0.0.0/33")
    with pytest.raises(InvalidArgument, match="inbound_cidr_allowlist"):
        requested(definition)


def test_a_sandbox_records_tunnels_survive_its_json() -> None:
    from berth.domain.spec import TunnelAddress

    record = SandboxRecord(
        "sb-x", "ap-1", "ta-1V", 1.0, tunnels=[TunnelAddress(80, "127.0.0.1", 4000, "127.0.0.1", 4001)]
    )
    assert SandboxRecord.from_json("sb-x", record.to_json()).tunnels == record.tunnels
