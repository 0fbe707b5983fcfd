"""The listening sockets Berth takes (src/berth/listeners.py) give connections with Nagle off: asyncio turns on
TCP_NODELAY only for sockets whose proto says TCP, and without it each reply waited for the peer's delayed ACK."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from berth import listeners


async def _accepted_nodelay(sock: socket.socket) -> int:
    seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = writer.get_extra_info("socket")
        seen.set_result(conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    server = await asyncio.start_server(accepted, sock=sock)
    host, port = sock.getsockname()[:2]
    _, writer = await asyncio.open_connection(host, port)
    try:
        return await asyncio.wait_for(seen, 5)
    finally:
        writer.close()
        server.close()
        await server.wait_closed()


def test_connections_accepted_from_taken_sockets_have_nagle_off(tmp_path: Path) -> None:
    taken = listeners.take(tmp_path, [("127.0.0.1", 0)])  # port 0: plain sockets, no keeper
    try:
        assert asyncio.run(_accepted_nodelay(taken.sockets[0])) != 0
    finally:
        taken.release()
        for s in taken.sockets:
            s.close()
