"""SQLite tables of the web front door and the schedule trigger: endpoint URLs (one listening port each),
proxy-auth tokens (hashed) and schedules with the ticks they fired.

Shares the main store's connection (one file, one writer), whose tables SqliteStore.open created by
migration; every statement runs synchronously on the event loop thread and commits before it returns."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from berth.store.records import Endpoint, ScheduleRow, TickRow


def _endpoint(row: Sequence[Any]) -> Endpoint:
    return Endpoint(row[0], int(row[1]), row[2], row[3], row[4], bool(row[5]))


class WebStore:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    # endpoints
    async def endpoint_by_key(self, key: str) -> Endpoint | None:
        row = self._db.execute("SELECT * FROM web_endpoints WHERE key=?", (key,)).fetchone()
        return _endpoint(row) if row else None

    async def endpoint_by_port(self, port: int) -> Endpoint | None:
        row = self._db.execute("SELECT * FROM web_endpoints WHERE port=?", (port,)).fetchone()
        return _endpoint(row) if row else None

    async def endpoints(self) -> list[Endpoint]:
        return [_endpoint(r) for r in self._db.execute("SELECT * FROM web_endpoints ORDER BY port").fetchall()]

    async def put_endpoint(self, ep: Endpoint, now: float) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO web_endpoints VALUES (?,?,?,?,?,?,?)",
            (ep.key, ep.port, ep.app_id, ep.function_id, ep.method_name, int(ep.requires_auth), now),
        )

    async def move_endpoint(self, key: str, port: int) -> None:
        self._db.execute("UPDATE web_endpoints SET port=? WHERE key=?", (port, key))

    # proxy-auth tokens
    async def add_token(self, token_id: str, secret_hash: str, now: float) -> None:
        self._db.execute(
            "INSERT INTO web_tokens(token_id, secret_hash, created_at) VALUES (?,?,?)", (token_id, secret_hash, now)
        )

    async def token_hash(self, token_id: str) -> str | None:
        row = self._db.execute(
            "SELECT secret_hash FROM web_tokens WHERE token_id=? AND revoked_at IS NULL", (token_id,)
        ).fetchone()
        return str(row[0]) if row else None

    async def tokens(self) -> list[tuple[str, float, float | None]]:
        rows = self._db.execute("SELECT token_id, created_at, revoked_at FROM web_tokens ORDER BY created_at")
        return [(str(r[0]), float(r[1]), r[2]) for r in rows.fetchall()]

    async def revoke_token(self, token_id: str, now: float) -> bool:
        cur = self._db.execute(
            "UPDATE web_tokens SET revoked_at=? WHERE token_id=? AND revoked_at IS NULL", (now, token_id)
        )
        return cur.rowcount > 0

    # schedules
    async def schedule(self, function_id: str) -> ScheduleRow | None:
        row = self._db.execute("SELECT * FROM schedules WHERE function_id=?", (function_id,)).fetchone()
        return ScheduleRow(row[0], row[1], bytes(row[2]), row[3], row[4]) if row else None

    async def put_schedule(self, row: ScheduleRow) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO schedules VALUES (?,?,?,?,?)",
            (row.function_id, row.app_id, row.spec, row.anchor, row.next_tick),
        )

    async def delete_schedule(self, function_id: str) -> None:
        self._db.execute("DELETE FROM schedules WHERE function_id=?", (function_id,))

    async def due_schedules(self, now: float) -> list[ScheduleRow]:
        rows = self._db.execute("SELECT * FROM schedules WHERE next_tick<=? ORDER BY next_tick", (now,)).fetchall()
        return [ScheduleRow(r[0], r[1], bytes(r[2]), r[3], r[4]) for r in rows]

    async def earliest_tick(self) -> float | None:
        row = self._db.execute("SELECT min(next_tick) FROM schedules").fetchone()
        return float(row[0]) if row and row[0] is not None else None

    async def record_tick(self, tick: TickRow, next_tick: float) -> bool:
        """Claim one tick and advance its schedule in one transaction. False when it was claimed before."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO schedule_ticks VALUES (?,?,?,?,?)",
                (tick.function_id, tick.tick_at, tick.call_id, tick.input_id, tick.state),
            )
            self._db.execute("UPDATE schedules SET next_tick=? WHERE function_id=?", (next_tick, tick.function_id))
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        return cur.rowcount > 0

    async def pending_ticks(self) -> list[TickRow]:
        rows = self._db.execute("SELECT * FROM schedule_ticks WHERE state='pending' ORDER BY tick_at").fetchall()
        return [TickRow(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    async def mark_fired(self, function_id: str, tick_at: float) -> None:
        self._db.execute(
            "UPDATE schedule_ticks SET state='fired' WHERE function_id=? AND tick_at=?", (function_id, tick_at)
        )

    async def prune_ticks(self, before: float) -> int:
        """Forget fired ticks older than `before`: a tick is never claimed again once its schedule moved past it."""
        cur = self._db.execute("DELETE FROM schedule_ticks WHERE state='fired' AND tick_at<?", (before,))
        return cur.rowcount

    async def ticks(self, function_id: str) -> list[TickRow]:
        rows = self._db.execute(
            "SELECT * FROM schedule_ticks WHERE function_id=? ORDER BY tick_at", (function_id,)
        ).fetchall()
        return [TickRow(r[0], r[1], r[2], r[3], r[4]) for r in rows]
