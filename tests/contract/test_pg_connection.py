"""How the PostgreSQL backend opens and survives its connection: a database that is down is named
without its password; a statement on a dropped connection is retried; a write is retried only when the
connection broke before COMMIT was sent, never when the commit may already have happened. Connections are
cut for real, by a TCP proxy in front of the test server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from berth.config import Settings
from berth.devservices.postgres import free_port
from berth.errors import StoreUnavailable
from berth.store.factory import Stores, open_stores
from berth.store.records import AppRecord, CallRecord


class CuttingProxy:
    """Forwards TCP to PostgreSQL. Armed with a marker, it cuts the connection whose client sends it:
    before forwarding it (`after=False`) or once the server has had time to act on it (`after=True`)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.marker: bytes | None = None
        self.after = False
        self.cuts = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()

    def arm(self, marker: bytes, *, after: bool) -> None:
        self.marker, self.after = marker, after

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        down = asyncio.create_task(self._pipe(server_r, client_w))
        try:
            while data := await client_r.read(65536):
                marked = self.marker is not None and self.marker in data
                if marked:
                    down.cancel()  # from here on, nothing the server says reaches the client
                    if not self.after:
                        break
                server_w.write(data)
                await server_w.drain()
                if marked:
                    await asyncio.sleep(0.3)  # the server acts on it (commits) meanwhile
                    break
            if marked:
                self.marker = None
                self.cuts += 1
        finally:
            down.cancel()
            client_w.transport.abort()
            server_w.transport.abort()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        # The server hung up (after a Terminate, say): hang up on the client too, which waits for it.
        writer.transport.abort()


@pytest.fixture
async def proxy(postgres_server: object, postgres_url: str) -> AsyncIterator[CuttingProxy]:
    port = int(postgres_url.rsplit(":", 1)[1].split("/", 1)[0])
    cutting = CuttingProxy(port)
    await cutting.start()
    yield cutting
    await cutting.close()


@pytest.fixture
async def proxied(proxy: CuttingProxy, postgres_url: str, tmp_path: Path) -> AsyncIterator[Stores]:
    url = postgres_url.replace(f":{proxy.target_port}/", f":{proxy.port}/")
    stores = await open_stores(Settings(data_dir=tmp_path, database_url=url))
    yield stores
    await stores.close()


async def _queue_two_inputs(stores: Stores) -> None:
    await stores.core.create_call(CallRecord("fc-1", "fu-1", 2, 1, False, 0, False, 0.0))
    await stores.core.add_inputs("fc-1", "fu-1", [("in-0", 0, "", b"p"), ("in-1", 1, "", b"p")], now=1.0)


async def test_a_database_that_is_down_is_named_in_the_error_without_its_password(tmp_path: Path) -> None:
    url = f"postgresql://berth:hunter2@127.0.0.1:{free_port()}/berth?password=hunter3"
    with pytest.raises(StoreUnavailable) as caught:
        await open_stores(Settings(data_dir=tmp_path, database_url=url))
    assert "127.0.0.1" in caught.value.message and "/berth" in caught.value.message
    assert "hunter2" not in caught.value.message and "hunter3" not in caught.value.message


async def test_a_claim_cut_off_before_its_commit_is_retried_and_leases_once(
    proxied: Stores, proxy: CuttingProxy
) -> None:
    await _queue_two_inputs(proxied)
    proxy.arm(b"UPDATE inputs i SET state='leased'", after=False)
    leases = await proxied.core.claim_inputs("fu-1", "ta-a", 1, now=2.0, timeout_s=None)
    assert proxy.cuts == 1
    assert [lease.input_id for lease in leases] == ["in-0"]
    assert [s.input_id for s in await proxied.core.inputs_held_by("ta-a")] == ["in-0"]


async def test_a_claim_cut_off_while_committing_is_not_retried_so_it_never_leases_twice(
    proxied: Stores, proxy: CuttingProxy
) -> None:
    await _queue_two_inputs(proxied)
    await proxied.core.claim_inputs("fu-other", "ta-x", 1, now=2.0, timeout_s=None)  # prepares the statement
    proxy.arm(b"COMMIT", after=True)
    with pytest.raises(StoreUnavailable, match="while committing"):
        await proxied.core.claim_inputs("fu-1", "ta-a", 1, now=2.0, timeout_s=None)
    assert proxy.cuts == 1
    # The commit went through once; a blind retry would have leased in-1 to the same holder as well.
    assert [s.input_id for s in await proxied.core.inputs_held_by("ta-a")] == ["in-0"]


async def _drop_every_connection(url: str) -> None:
    admin = await asyncpg.connect(url)
    try:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await admin.close()


async def test_statements_succeed_after_the_server_drops_every_connection(postgres_url: str, tmp_path: Path) -> None:
    stores = await open_stores(Settings(data_dir=tmp_path, database_url=postgres_url))
    try:
        await stores.core.put_app(AppRecord("ap-1", "web", "", 1, "main", 1.0))
        await _drop_every_connection(postgres_url)
        assert await stores.core.get_app("ap-1") is not None  # a read on a dead pooled connection
        await _drop_every_connection(postgres_url)
        await stores.core.add_token("ak-1", "h", None, 1.0)  # a write that must not run twice: its BEGIN failed
        await _drop_every_connection(postgres_url)
        await stores.core.put_app(AppRecord("ap-2", "web", "", 1, "main", 2.0))
        assert await stores.core.token("ak-1", 2.0) == ("h", "")
        assert await stores.core.get_app("ap-2") is not None
    finally:
        await stores.close()
