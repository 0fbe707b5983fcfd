"""SQLite store for the state objects apps share: named and ephemeral volumes, secrets, dicts and queues,
the entries of dicts and the items of queues. It shares the core store's connection (one file, one writer),
whose tables SqliteStore.open created by migration; statements run on the event loop's thread and never
await mid-transaction, so each method is atomic."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence

from berth.store.records import StateObject
from berth.store.sqlite.connection import transaction

_COLS = "object_id, kind, name, environment, ephemeral, app_id, version, body, created_at, heartbeat_at"


def _row(row: Sequence[object] | None) -> StateObject | None:
    if row is None:
        return None
    object_id, kind, name, env, eph, app_id, version, body, created, beat = row
    return StateObject(
        str(object_id),
        str(kind),
        None if name is None else str(name),
        str(env),
        bool(eph),
        None if app_id is None else str(app_id),
        int(version),  # type: ignore[call-overload]
        None if body is None else bytes(body),  # type: ignore[call-overload]
        float(created),  # type: ignore[arg-type]
        float(beat),  # type: ignore[arg-type]
    )


def _values(obj: StateObject) -> tuple[object, ...]:
    """A state object's columns, in _COLS order."""
    return (
        obj.object_id,
        obj.kind,
        obj.name,
        obj.environment,
        int(obj.ephemeral),
        obj.app_id,
        obj.version,
        obj.body,
        obj.created_at,
        obj.heartbeat_at,
    )


class SqliteStateStore:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def _tx(self) -> contextlib.AbstractContextManager[None]:
        return transaction(self._db)

    # objects
    async def put(self, obj: StateObject) -> None:
        self._db.execute(
            f"INSERT OR REPLACE INTO state_objects({_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
            _values(obj),
        )

    async def create(self, obj: StateObject) -> bool:
        sql = f"INSERT OR IGNORE INTO state_objects({_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?)"
        return self._db.execute(sql, _values(obj)).rowcount > 0

    async def get(self, kind: str, object_id: str) -> StateObject | None:
        sql = f"SELECT {_COLS} FROM state_objects WHERE kind=? AND object_id=?"
        return _row(self._db.execute(sql, (kind, object_id)).fetchone())

    async def by_name(self, kind: str, environment: str, name: str) -> StateObject | None:
        sql = f"SELECT {_COLS} FROM state_objects WHERE kind=? AND environment=? AND name=?"
        return _row(self._db.execute(sql, (kind, environment, name)).fetchone())

    async def list_named(self, kind: str, environment: str, created_before: float, limit: int) -> list[StateObject]:
        sql = (
            f"SELECT {_COLS} FROM state_objects WHERE kind=? AND environment=? AND name IS NOT NULL"
            " AND created_at < ? ORDER BY created_at DESC LIMIT ?"
        )
        rows = self._db.execute(sql, (kind, environment, created_before, limit)).fetchall()
        return [o for o in map(_row, rows) if o is not None]

    async def set_body(self, object_id: str, body: bytes) -> None:
        self._db.execute("UPDATE state_objects SET body=? WHERE object_id=?", (body, object_id))

    async def set_body_if(self, object_id: str, expected: bytes | None, body: bytes) -> bool:
        sql = "UPDATE state_objects SET body=? WHERE object_id=? AND body IS ?"
        return self._db.execute(sql, (body, object_id, expected)).rowcount > 0

    async def rename(self, object_id: str, name: str) -> None:
        self._db.execute("UPDATE state_objects SET name=? WHERE object_id=?", (name, object_id))

    async def heartbeat(self, object_id: str, now: float) -> bool:
        cur = self._db.execute("UPDATE state_objects SET heartbeat_at=? WHERE object_id=?", (now, object_id))
        return cur.rowcount > 0

    async def delete(self, object_id: str) -> None:
        with self._tx():
            self._db.execute("DELETE FROM dict_entries WHERE dict_id=?", (object_id,))
            self._db.execute("DELETE FROM queue_items WHERE queue_id=?", (object_id,))
            self._db.execute("DELETE FROM queue_partitions WHERE queue_id=?", (object_id,))
            self._db.execute("DELETE FROM state_objects WHERE object_id=?", (object_id,))

    async def expired_ephemeral(self, kind: str, before: float) -> list[StateObject]:
        sql = f"SELECT {_COLS} FROM state_objects WHERE kind=? AND ephemeral=1 AND heartbeat_at < ?"
        return [o for o in map(_row, self._db.execute(sql, (kind, before)).fetchall()) if o is not None]

    # dict entries (keys are the exact pickled bytes)
    def _dict_value(self, dict_id: str, key: bytes) -> bytes | None:
        row = self._db.execute("SELECT value FROM dict_entries WHERE dict_id=? AND key=?", (dict_id, key)).fetchone()
        return None if row is None else bytes(row[0])

    def _queue_count(self, queue_id: str, partition: bytes | None) -> int:
        if partition is None:
            row = self._db.execute("SELECT COUNT(*) FROM queue_items WHERE queue_id=?", (queue_id,)).fetchone()
        else:
            sql = "SELECT COUNT(*) FROM queue_items WHERE queue_id=? AND partition=?"
            row = self._db.execute(sql, (queue_id, partition)).fetchone()
        return int(row[0])

    async def dict_get(self, dict_id: str, key: bytes) -> bytes | None:
        return self._dict_value(dict_id, key)

    async def dict_put(self, dict_id: str, entries: Sequence[tuple[bytes, bytes]], now: float, only_new: bool) -> bool:
        """Writes the entries; with only_new, writes none if any key exists. Returns whether it wrote."""
        with self._tx():
            if only_new:
                for key, _ in entries:
                    sql = "SELECT 1 FROM dict_entries WHERE dict_id=? AND key=?"
                    if self._db.execute(sql, (dict_id, key)).fetchone():
                        return False
            self._db.executemany(
                "INSERT OR REPLACE INTO dict_entries(dict_id, key, value, updated_at) VALUES (?,?,?,?)",
                [(dict_id, k, v, now) for k, v in entries],
            )
        return True

    async def dict_pop(self, dict_id: str, key: bytes) -> bytes | None:
        with self._tx():
            value = self._dict_value(dict_id, key)
            if value is not None:
                self._db.execute("DELETE FROM dict_entries WHERE dict_id=? AND key=?", (dict_id, key))
        return value

    async def dict_len(self, dict_id: str, cap: int) -> int:
        sql = "SELECT COUNT(*) FROM (SELECT 1 FROM dict_entries WHERE dict_id=? LIMIT ?)"
        return int(self._db.execute(sql, (dict_id, cap)).fetchone()[0])

    async def dict_clear(self, dict_id: str) -> None:
        self._db.execute("DELETE FROM dict_entries WHERE dict_id=?", (dict_id,))

    async def dict_entries(self, dict_id: str) -> list[tuple[bytes, bytes]]:
        rows = self._db.execute("SELECT key, value FROM dict_entries WHERE dict_id=? ORDER BY rowid", (dict_id,))
        return [(bytes(k), bytes(v)) for k, v in rows.fetchall()]

    # queue items, FIFO per (queue, partition)
    async def queue_len(self, queue_id: str, partition: bytes | None) -> int:
        return self._queue_count(queue_id, partition)

    async def queue_push(
        self, queue_id: str, partition: bytes, values: Sequence[bytes], now: float, max_items: int, ttl_s: float
    ) -> bool:
        """Appends all values, or none when that would take the partition past max_items. The partition
        then expires ttl_s after this put."""
        with self._tx():
            if self._queue_count(queue_id, partition) + len(values) > max_items:
                return False
            self._db.executemany(
                "INSERT INTO queue_items(queue_id, partition, value, created_at) VALUES (?,?,?,?)",
                [(queue_id, partition, v, now) for v in values],
            )
            self._db.execute(
                "INSERT OR REPLACE INTO queue_partitions(queue_id, partition, expires_at) VALUES (?,?,?)",
                (queue_id, partition, now + ttl_s),
            )
        return True

    async def queue_expire(self, queue_id: str, now: float) -> None:
        """Clears the partitions whose last put is older than their TTL."""
        sql = "SELECT partition FROM queue_partitions WHERE queue_id=? AND expires_at<?"
        expired = [bytes(p) for (p,) in self._db.execute(sql, (queue_id, now)).fetchall()]
        if not expired:
            return
        with self._tx():
            for p in expired:
                self._db.execute("DELETE FROM queue_items WHERE queue_id=? AND partition=?", (queue_id, p))
                self._db.execute("DELETE FROM queue_partitions WHERE queue_id=? AND partition=?", (queue_id, p))

    async def queue_pop(self, queue_id: str, partition: bytes, n: int) -> list[bytes]:
        with self._tx():
            rows = self._db.execute(
                "SELECT seq, value FROM queue_items WHERE queue_id=? AND partition=? ORDER BY seq LIMIT ?",
                (queue_id, partition, n),
            ).fetchall()
            if rows:
                self._db.execute(
                    "DELETE FROM queue_items WHERE queue_id=? AND partition=? AND seq<=?",
                    (queue_id, partition, rows[-1][0]),
                )
        return [bytes(v) for _, v in rows]

    async def queue_items_after(self, queue_id: str, partition: bytes, after: int, n: int) -> list[tuple[int, bytes]]:
        rows = self._db.execute(
            "SELECT seq, value FROM queue_items WHERE queue_id=? AND partition=? AND seq>? ORDER BY seq LIMIT ?",
            (queue_id, partition, after, n),
        ).fetchall()
        return [(int(s), bytes(v)) for s, v in rows]

    async def queue_clear(self, queue_id: str, partition: bytes | None) -> None:
        if partition is None:
            self._db.execute("DELETE FROM queue_items WHERE queue_id=?", (queue_id,))
        else:
            self._db.execute("DELETE FROM queue_items WHERE queue_id=? AND partition=?", (queue_id, partition))

    async def queue_stats(self, queue_id: str) -> tuple[int, int]:
        """(number of non-empty partitions, total items)."""
        sql = "SELECT COUNT(DISTINCT partition), COUNT(*) FROM queue_items WHERE queue_id=?"
        parts, total = self._db.execute(sql, (queue_id,)).fetchone()
        return int(parts), int(total)
