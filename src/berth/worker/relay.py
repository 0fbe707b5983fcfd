"""The relay a worker host runs for its containers: plain TCP on this host's loopback, forwarded to the
control plane (over TLS, checked against Berth's CA, when the server is reached by https). Containers then
call `http://127.0.0.1:PORT`, which the stock client accepts without TLS, and never need the CA in their
trust store (the stock client trusts only its bundled roots)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl

log = logging.getLogger("berth.worker.relay")

_CHUNK = 256 * 1024


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


class Relay:
    """One listening port that forwards each connection to `upstream` (host, port)."""

    def __init__(self, upstream: tuple[str, int], tls: ssl.SSLContext | None, listen_host: str = "127.0.0.1") -> None:
        self._upstream = upstream
        self._tls = tls
        self._listen_host = listen_host
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://{self._listen_host}:{self.port}"

    def retarget(self, upstream: tuple[str, int]) -> None:
        """Forward new connections to another upstream (the server replica this worker moved to)."""
        self._upstream = upstream

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self._listen_host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, port = self._upstream
        try:
            up_reader, up_writer = await asyncio.open_connection(
                host, port, ssl=self._tls, server_hostname=host if self._tls else None
            )
        except (OSError, ssl.SSLError) as exc:
            log.warning("relay to %s:%d failed: %s", host, port, exc)
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
