"""PostgreSQL HistoryStore: apps by name, deployment history, environments and persisted logs.

`add_log_now` must return at once without reordering (ports.LogStore), and a network round trip cannot be
synchronous on the event loop. So batches go into an in-memory list in call order, and one background
task writes them in that order; a flush lock keeps two flushes from interleaving. `logs_between` and
`log_times` flush first, so a reader sees every batch queued before it asked."""

from __future__ import annotations

import asyncio
import logging

from modal_proto import api_pb2

from berth.errors import StoreUnavailable
from berth.store.postgres.db import Conn, Database
from berth.store.records import APP_COLS as _APP_COLS
from berth.store.records import ENVIRONMENT_TABLES, AppRecord, DeploymentRecord

log = logging.getLogger("berth.store.postgres")

_DEPLOYED = api_pb2.APP_STATE_DEPLOYED
_DEPLOY_COLS = (
    "app_id, version, deployed_at, tag, client_version, rollback_version, commit_info, snapshot, deployment_type"
)


class PostgresHistoryStore:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._pending: list[tuple[str, float, bytes]] = []
        self._flush_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        db.on_close(self._stop_writer)

    # apps by name
    async def deployed_app(self, environment: str, name: str) -> AppRecord | None:
        row = await self._db.fetchrow(
            f"SELECT {_APP_COLS} FROM apps WHERE environment=$1 AND name=$2 AND state=$3 "
            "ORDER BY created_at DESC LIMIT 1",
            environment,
            name,
            _DEPLOYED,
        )
        return AppRecord(*row) if row else None

    async def last_app_named(self, environment: str, name: str) -> AppRecord | None:
        """The most recent app that carried this deployment name, deployed or stopped since."""
        row = await self._db.fetchrow(
            f"SELECT {_APP_COLS} FROM apps WHERE environment=$1 AND name=$2 ORDER BY created_at DESC LIMIT 1",
            environment,
            name,
        )
        return AppRecord(*row) if row else None

    async def list_apps(self, environment: str) -> list[AppRecord]:
        rows = await self._db.fetch(
            f"SELECT {_APP_COLS} FROM apps WHERE environment=$1 AND state<>$2 ORDER BY created_at",
            environment,
            api_pb2.APP_STATE_INITIALIZING,
        )
        return [AppRecord(*r) for r in rows]

    async def running_apps(self) -> list[AppRecord]:
        states = [api_pb2.APP_STATE_EPHEMERAL, api_pb2.APP_STATE_INITIALIZING, api_pb2.APP_STATE_DETACHED]
        rows = await self._db.fetch(f"SELECT {_APP_COLS} FROM apps WHERE state = ANY($1::int[])", states)
        return [AppRecord(*r) for r in rows]

    # deployments
    async def add_deployment(self, rec: DeploymentRecord) -> None:
        await self._db.write(
            f"INSERT INTO deployments({_DEPLOY_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            rec.app_id,
            rec.version,
            rec.deployed_at,
            rec.tag,
            rec.client_version,
            rec.rollback_version,
            rec.commit_info,
            rec.snapshot,
            rec.deployment_type,
        )

    async def deployments(self, app_id: str) -> list[DeploymentRecord]:
        rows = await self._db.fetch(f"SELECT {_DEPLOY_COLS} FROM deployments WHERE app_id=$1 ORDER BY version", app_id)
        return [DeploymentRecord(r[0], r[1], r[2], r[3], r[4], r[5], bytes(r[6]), bytes(r[7]), r[8]) for r in rows]

    # environments
    async def add_environment(self, name: str, now: float) -> bool:
        rows = await self._db.write(
            "INSERT INTO environments(name, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING 1", name, now
        )
        return len(rows) == 1

    async def environments(self) -> list[tuple[str, float]]:
        return [(r[0], r[1]) for r in await self._db.fetch("SELECT name, created_at FROM environments ORDER BY name")]

    async def delete_environment(self, name: str) -> bool:
        return len(await self._db.write("DELETE FROM environments WHERE name=$1 RETURNING 1", name)) == 1

    async def rename_environment(self, old: str, new: str) -> bool:
        async def body(conn: Conn) -> bool:
            if await conn.fetchval("UPDATE environments SET name=$1 WHERE name=$2 RETURNING 1", new, old) is None:
                return False
            for table in ENVIRONMENT_TABLES:
                await conn.execute(f"UPDATE {table} SET environment=$1 WHERE environment=$2", new, old)
            await conn.execute("UPDATE quotas SET scope=$1 WHERE scope=$2", f"env:{new}", f"env:{old}")
            return True

        return await self._db.transaction(body)

    # logs
    def add_log_now(self, app_id: str, now: float, batch: bytes) -> None:
        """Queue the batch in call order; the writer task stores it shortly after."""
        self._pending.append((app_id, now, batch))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_forever())
        self._wake.set()

    async def _write_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        """Write every queued batch, in order. A batch that cannot be written is dropped with a warning:
        stored logs are history, and holding them would grow memory while the database is down."""
        async with self._flush_lock:
            batch, self._pending = self._pending, []
            if not batch:
                return

            async def body(conn: Conn) -> None:
                await conn.executemany("INSERT INTO logs(app_id, created_at, batch) VALUES ($1, $2, $3)", batch)

            try:
                # Not idempotent (each row gets a new seq): retried only if nothing can have committed.
                await self._db.transaction(body)
            except StoreUnavailable as exc:
                log.warning("dropped %d log batches: %s", len(batch), exc)

    async def _stop_writer(self) -> None:
        # Cancelled while it waits, never mid-write: a batch it had taken would be lost with the rollback.
        async with self._flush_lock:
            if self._writer is not None:
                self._writer.cancel()
                await asyncio.gather(self._writer, return_exceptions=True)
        await self.flush()

    async def logs_between(self, app_id: str, since: float, until: float, limit: int) -> list[tuple[float, bytes]]:
        await self.flush()
        rows = await self._db.fetch(
            "SELECT created_at, batch FROM logs WHERE app_id=$1 AND created_at>=$2 AND created_at<$3 "
            "ORDER BY seq DESC LIMIT $4",
            app_id,
            since,
            until,
            limit,
        )
        return [(r[0], bytes(r[1])) for r in reversed(rows)]

    async def log_times(self, app_id: str, since: float, until: float) -> list[float]:
        await self.flush()
        rows = await self._db.fetch(
            "SELECT created_at FROM logs WHERE app_id=$1 AND created_at>=$2 AND created_at<$3 ORDER BY seq",
            app_id,
            since,
            until,
        )
        return [r[0] for r in rows]
