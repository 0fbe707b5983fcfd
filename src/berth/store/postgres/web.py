"""PostgreSQL WebStore: web endpoint URLs (one listening port each), proxy-auth tokens, and schedules
with the ticks they fired. A tick is claimed once across replicas: its row is inserted with
ON CONFLICT DO NOTHING, and only the replica whose insert went in gets True."""

from __future__ import annotations

from typing import Any

from berth.store.postgres.db import Conn, Database, lock_value
from berth.store.records import Endpoint, ScheduleRow, TickRow

_EP_COLS = "key, port, app_id, function_id, method_name, requires_auth"
_SCHED_COLS = "function_id, app_id, spec, anchor, next_tick"
_TICK_COLS = "function_id, tick_at, call_id, input_id, state"


def _endpoint(row: Any) -> Endpoint:
    return Endpoint(row[0], int(row[1]), row[2], row[3], row[4], bool(row[5]))


def _schedule(row: Any) -> ScheduleRow:
    return ScheduleRow(row[0], row[1], bytes(row[2]), row[3], row[4])


def _tick(row: Any) -> TickRow:
    return TickRow(row[0], row[1], row[2], row[3], row[4])


class PostgresWebStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    # endpoints
    async def endpoint_by_key(self, key: str) -> Endpoint | None:
        row = await self._db.fetchrow(f"SELECT {_EP_COLS} FROM web_endpoints WHERE key=$1", key)
        return _endpoint(row) if row else None

    async def endpoint_by_port(self, port: int) -> Endpoint | None:
        row = await self._db.fetchrow(f"SELECT {_EP_COLS} FROM web_endpoints WHERE port=$1", port)
        return _endpoint(row) if row else None

    async def endpoints(self) -> list[Endpoint]:
        return [_endpoint(r) for r in await self._db.fetch(f"SELECT {_EP_COLS} FROM web_endpoints ORDER BY port")]

    async def put_endpoint(self, ep: Endpoint, now: float) -> None:
        async def upsert(conn: Conn) -> None:
            # The port is unique too: SQLite's REPLACE drops an endpoint that held it under another key.
            await lock_value(conn, "web_endpoints.port", ep.port)
            await conn.execute("DELETE FROM web_endpoints WHERE port=$1 AND key<>$2", ep.port, ep.key)
            await conn.execute(
                f"INSERT INTO web_endpoints({_EP_COLS}, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) "
                "ON CONFLICT (key) DO UPDATE SET port=EXCLUDED.port, app_id=EXCLUDED.app_id, "
                "function_id=EXCLUDED.function_id, method_name=EXCLUDED.method_name, "
                "requires_auth=EXCLUDED.requires_auth, updated_at=EXCLUDED.updated_at",
                ep.key,
                ep.port,
                ep.app_id,
                ep.function_id,
                ep.method_name,
                ep.requires_auth,
                now,
            )

        await self._db.transaction(upsert, idempotent=True)

    async def move_endpoint(self, key: str, port: int) -> None:
        await self._db.execute("UPDATE web_endpoints SET port=$1 WHERE key=$2", port, key)

    # proxy-auth tokens
    async def add_token(self, token_id: str, secret_hash: str, now: float) -> None:
        await self._db.write(
            "INSERT INTO web_tokens(token_id, secret_hash, created_at) VALUES ($1, $2, $3)", token_id, secret_hash, now
        )

    async def token_hash(self, token_id: str) -> str | None:
        value = await self._db.fetchval(
            "SELECT secret_hash FROM web_tokens WHERE token_id=$1 AND revoked_at IS NULL", token_id
        )
        return None if value is None else str(value)

    async def tokens(self) -> list[tuple[str, float, float | None]]:
        rows = await self._db.fetch("SELECT token_id, created_at, revoked_at FROM web_tokens ORDER BY created_at")
        return [(str(r[0]), float(r[1]), r[2]) for r in rows]

    async def revoke_token(self, token_id: str, now: float) -> bool:
        rows = await self._db.write(
            "UPDATE web_tokens SET revoked_at=$1 WHERE token_id=$2 AND revoked_at IS NULL RETURNING 1", now, token_id
        )
        return len(rows) > 0

    # schedules
    async def schedule(self, function_id: str) -> ScheduleRow | None:
        row = await self._db.fetchrow(f"SELECT {_SCHED_COLS} FROM schedules WHERE function_id=$1", function_id)
        return _schedule(row) if row else None

    async def put_schedule(self, row: ScheduleRow) -> None:
        await self._db.execute(
            f"INSERT INTO schedules({_SCHED_COLS}) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (function_id) DO UPDATE "
            "SET app_id=EXCLUDED.app_id, spec=EXCLUDED.spec, anchor=EXCLUDED.anchor, next_tick=EXCLUDED.next_tick",
            row.function_id,
            row.app_id,
            row.spec,
            row.anchor,
            row.next_tick,
        )

    async def delete_schedule(self, function_id: str) -> None:
        await self._db.execute("DELETE FROM schedules WHERE function_id=$1", function_id)

    async def due_schedules(self, now: float) -> list[ScheduleRow]:
        rows = await self._db.fetch(f"SELECT {_SCHED_COLS} FROM schedules WHERE next_tick<=$1 ORDER BY next_tick", now)
        return [_schedule(r) for r in rows]

    async def earliest_tick(self) -> float | None:
        value = await self._db.fetchval("SELECT min(next_tick) FROM schedules")
        return None if value is None else float(value)

    async def record_tick(self, tick: TickRow, next_tick: float) -> bool:
        """Claim one tick and advance its schedule in one transaction. False when it was claimed before."""

        async def body(conn: Conn) -> bool:
            claimed = await conn.fetch(
                f"INSERT INTO schedule_ticks({_TICK_COLS}) VALUES ($1, $2, $3, $4, $5) "
                "ON CONFLICT (function_id, tick_at) DO NOTHING RETURNING 1",
                tick.function_id,
                tick.tick_at,
                tick.call_id,
                tick.input_id,
                tick.state,
            )
            await conn.execute("UPDATE schedules SET next_tick=$1 WHERE function_id=$2", next_tick, tick.function_id)
            return len(claimed) == 1

        # Not retried once COMMIT was sent: a retry of a committed claim would answer False for a tick
        # this replica did claim, and nobody would fire it.
        return await self._db.transaction(body)

    async def pending_ticks(self) -> list[TickRow]:
        rows = await self._db.fetch(f"SELECT {_TICK_COLS} FROM schedule_ticks WHERE state='pending' ORDER BY tick_at")
        return [_tick(r) for r in rows]

    async def mark_fired(self, function_id: str, tick_at: float) -> None:
        await self._db.execute(
            "UPDATE schedule_ticks SET state='fired' WHERE function_id=$1 AND tick_at=$2", function_id, tick_at
        )

    async def prune_ticks(self, before: float) -> int:
        """Forget fired ticks older than `before`: a tick is never claimed again once its schedule moved past it."""
        sql = "DELETE FROM schedule_ticks WHERE state='fired' AND tick_at<$1 RETURNING 1"
        return len(await self._db.write(sql, before))

    async def ticks(self, function_id: str) -> list[TickRow]:
        rows = await self._db.fetch(
            f"SELECT {_TICK_COLS} FROM schedule_ticks WHERE function_id=$1 ORDER BY tick_at", function_id
        )
        return [_tick(r) for r in rows]
