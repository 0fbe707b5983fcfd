"""PostgreSQL StateStore: named and ephemeral volumes, secrets, dicts and queues (the objects), and the
entries of dicts and items of queues. At scale the contents may live in Redis instead; these tables make a
PostgreSQL-only deployment complete, with the same behaviour as the SQLite store.

Queue operations that read then write (a capacity check before a push, the partitions to expire) take a
transaction-scoped advisory lock per queue, so two replicas cannot both pass the same check."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from berth.store.postgres.db import Conn, Database, lock_value
from berth.store.records import StateObject

_COLS = "object_id, kind, name, environment, ephemeral, app_id, version, body, created_at, heartbeat_at"


def _obj(row: Any) -> StateObject:
    oid, kind, name, env, eph, app_id, version, body, created, beat = row
    body = None if body is None else bytes(body)
    return StateObject(oid, kind, name, env, bool(eph), app_id, version, body, created, beat)


async def _lock_queue(conn: Conn, queue_id: str) -> None:
    await lock_value(conn, "queue", queue_id)


def _values(obj: StateObject) -> tuple[object, ...]:
    """A state object's columns, in _COLS order."""
    return (
        obj.object_id,
        obj.kind,
        obj.name,
        obj.environment,
        obj.ephemeral,
        obj.app_id,
        obj.version,
        obj.body,
        obj.created_at,
        obj.heartbeat_at,
    )


class PostgresStateStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    # objects
    async def put(self, obj: StateObject) -> None:
        async def upsert(conn: Conn) -> None:
            if obj.name is not None:  # SQLite's REPLACE also drops the row that held this name
                await lock_value(conn, "state_objects.name", obj.kind, obj.environment, obj.name)
                await conn.execute(
                    "DELETE FROM state_objects WHERE kind=$1 AND environment=$2 AND name=$3 AND object_id<>$4",
                    obj.kind,
                    obj.environment,
                    obj.name,
                    obj.object_id,
                )
            await conn.execute(
                f"INSERT INTO state_objects({_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) "
                "ON CONFLICT (object_id) DO UPDATE SET kind=EXCLUDED.kind, name=EXCLUDED.name, "
                "environment=EXCLUDED.environment, ephemeral=EXCLUDED.ephemeral, app_id=EXCLUDED.app_id, "
                "version=EXCLUDED.version, body=EXCLUDED.body, created_at=EXCLUDED.created_at, "
                "heartbeat_at=EXCLUDED.heartbeat_at",
                *_values(obj),
            )

        await self._db.transaction(upsert, idempotent=True)

    async def create(self, obj: StateObject) -> bool:
        touched = await self._db.execute(
            f"INSERT INTO state_objects({_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) "
            "ON CONFLICT DO NOTHING",
            *_values(obj),
        )
        # A retried insert whose first try committed finds its own row: that is still this caller's create.
        return touched > 0 or await self.get(obj.kind, obj.object_id) is not None

    async def get(self, kind: str, object_id: str) -> StateObject | None:
        sql = f"SELECT {_COLS} FROM state_objects WHERE kind=$1 AND object_id=$2"
        row = await self._db.fetchrow(sql, kind, object_id)
        return _obj(row) if row else None

    async def by_name(self, kind: str, environment: str, name: str) -> StateObject | None:
        row = await self._db.fetchrow(
            f"SELECT {_COLS} FROM state_objects WHERE kind=$1 AND environment=$2 AND name=$3", kind, environment, name
        )
        return _obj(row) if row else None

    async def list_named(self, kind: str, environment: str, created_before: float, limit: int) -> list[StateObject]:
        rows = await self._db.fetch(
            f"SELECT {_COLS} FROM state_objects WHERE kind=$1 AND environment=$2 AND name IS NOT NULL "
            "AND created_at < $3 ORDER BY created_at DESC LIMIT $4",
            kind,
            environment,
            created_before,
            limit,
        )
        return [_obj(r) for r in rows]

    async def set_body(self, object_id: str, body: bytes) -> None:
        await self._db.execute("UPDATE state_objects SET body=$1 WHERE object_id=$2", body, object_id)

    async def set_body_if(self, object_id: str, expected: bytes | None, body: bytes) -> bool:
        sql = "UPDATE state_objects SET body=$1 WHERE object_id=$2 AND body IS NOT DISTINCT FROM $3"
        return await self._db.execute(sql, body, object_id, expected) > 0

    async def rename(self, object_id: str, name: str) -> None:
        await self._db.execute("UPDATE state_objects SET name=$1 WHERE object_id=$2", name, object_id)

    async def heartbeat(self, object_id: str, now: float) -> bool:
        return await self._db.execute("UPDATE state_objects SET heartbeat_at=$1 WHERE object_id=$2", now, object_id) > 0

    async def delete(self, object_id: str) -> None:
        async def body(conn: Conn) -> None:
            await conn.execute("DELETE FROM dict_entries WHERE dict_id=$1", object_id)
            await conn.execute("DELETE FROM queue_items WHERE queue_id=$1", object_id)
            await conn.execute("DELETE FROM queue_partitions WHERE queue_id=$1", object_id)
            await conn.execute("DELETE FROM state_objects WHERE object_id=$1", object_id)

        await self._db.transaction(body, idempotent=True)

    async def expired_ephemeral(self, kind: str, before: float) -> list[StateObject]:
        rows = await self._db.fetch(
            f"SELECT {_COLS} FROM state_objects WHERE kind=$1 AND ephemeral AND heartbeat_at < $2", kind, before
        )
        return [_obj(r) for r in rows]

    # dict entries (keys are the exact pickled bytes)
    async def dict_get(self, dict_id: str, key: bytes) -> bytes | None:
        value = await self._db.fetchval("SELECT value FROM dict_entries WHERE dict_id=$1 AND key=$2", dict_id, key)
        return None if value is None else bytes(value)

    async def dict_put(self, dict_id: str, entries: Sequence[tuple[bytes, bytes]], now: float, only_new: bool) -> bool:
        """Writes the entries; with only_new, writes none if any key exists. Returns whether it wrote."""
        latest = dict(entries)  # one row per key, the last value wins (as repeated REPLACEs would)
        rows = [(dict_id, k, v, now) for k, v in latest.items()]
        conflict = "DO NOTHING" if only_new else "DO UPDATE SET value=EXCLUDED.value, updated_at=EXCLUDED.updated_at"
        sql = (
            "INSERT INTO dict_entries(dict_id, key, value, updated_at) SELECT $1, k, v, $4 "
            "FROM unnest($2::bytea[], $3::bytea[]) WITH ORDINALITY AS t(k, v, n) ORDER BY n "
            f"ON CONFLICT (dict_id, key) {conflict}"
        )
        if not only_new:
            sql += ", seq=EXCLUDED.seq"  # a rewritten key moves to the end, as in SQLite

        async def body(conn: Conn) -> bool:
            written = await conn.fetch(sql + " RETURNING 1", dict_id, [r[1] for r in rows], [r[2] for r in rows], now)
            if len(written) < len(rows):
                raise _NotAllNew
            return True

        try:
            return await self._db.transaction(body)
        except _NotAllNew:
            return False

    async def dict_pop(self, dict_id: str, key: bytes) -> bytes | None:
        sql = "DELETE FROM dict_entries WHERE dict_id=$1 AND key=$2 RETURNING value"
        value = await self._db.write(sql, dict_id, key)
        return bytes(value[0][0]) if value else None

    async def dict_len(self, dict_id: str, cap: int) -> int:
        sql = "SELECT count(*) FROM (SELECT 1 FROM dict_entries WHERE dict_id=$1 LIMIT $2) AS capped"
        return int(await self._db.fetchval(sql, dict_id, cap))

    async def dict_clear(self, dict_id: str) -> None:
        await self._db.execute("DELETE FROM dict_entries WHERE dict_id=$1", dict_id)

    async def dict_entries(self, dict_id: str) -> list[tuple[bytes, bytes]]:
        rows = await self._db.fetch("SELECT key, value FROM dict_entries WHERE dict_id=$1 ORDER BY seq", dict_id)
        return [(bytes(r[0]), bytes(r[1])) for r in rows]

    # queue items, FIFO per (queue, partition)
    async def queue_len(self, queue_id: str, partition: bytes | None) -> int:
        if partition is None:
            return int(await self._db.fetchval("SELECT count(*) FROM queue_items WHERE queue_id=$1", queue_id))
        sql = "SELECT count(*) FROM queue_items WHERE queue_id=$1 AND partition=$2"
        return int(await self._db.fetchval(sql, queue_id, partition))

    async def queue_push(
        self, queue_id: str, partition: bytes, values: Sequence[bytes], now: float, max_items: int, ttl_s: float
    ) -> bool:
        """Appends all values, or none when that would take the partition past max_items. The partition
        then expires ttl_s after this put."""

        async def body(conn: Conn) -> bool:
            await _lock_queue(conn, queue_id)
            count = await conn.fetchval(
                "SELECT count(*) FROM queue_items WHERE queue_id=$1 AND partition=$2", queue_id, partition
            )
            if count + len(values) > max_items:
                return False
            await conn.executemany(
                "INSERT INTO queue_items(queue_id, partition, value, created_at) VALUES ($1, $2, $3, $4)",
                [(queue_id, partition, v, now) for v in values],
            )
            await conn.execute(
                "INSERT INTO queue_partitions(queue_id, partition, expires_at) VALUES ($1, $2, $3) "
                "ON CONFLICT (queue_id, partition) DO UPDATE SET expires_at=EXCLUDED.expires_at",
                queue_id,
                partition,
                now + ttl_s,
            )
            return True

        return await self._db.transaction(body)

    async def queue_expire(self, queue_id: str, now: float) -> None:
        """Clears the partitions whose last put is older than their TTL."""

        async def body(conn: Conn) -> None:
            await _lock_queue(conn, queue_id)
            expired = await conn.fetch(
                "DELETE FROM queue_partitions WHERE queue_id=$1 AND expires_at<$2 RETURNING partition", queue_id, now
            )
            if expired:
                await conn.execute(
                    "DELETE FROM queue_items WHERE queue_id=$1 AND partition = ANY($2::bytea[])",
                    queue_id,
                    [r[0] for r in expired],
                )

        await self._db.transaction(body, idempotent=True)

    async def queue_pop(self, queue_id: str, partition: bytes, n: int) -> list[bytes]:
        rows = await self._db.write(
            "DELETE FROM queue_items WHERE seq IN (SELECT seq FROM queue_items WHERE queue_id=$1 AND partition=$2 "
            "ORDER BY seq LIMIT $3 FOR UPDATE SKIP LOCKED) RETURNING seq, value",
            queue_id,
            partition,
            n,
        )
        return [bytes(r[1]) for r in sorted(rows, key=lambda r: r[0])]

    async def queue_items_after(self, queue_id: str, partition: bytes, after: int, n: int) -> list[tuple[int, bytes]]:
        rows = await self._db.fetch(
            "SELECT seq, value FROM queue_items WHERE queue_id=$1 AND partition=$2 AND seq>$3 ORDER BY seq LIMIT $4",
            queue_id,
            partition,
            after,
            n,
        )
        return [(int(r[0]), bytes(r[1])) for r in rows]

    async def queue_clear(self, queue_id: str, partition: bytes | None) -> None:
        if partition is None:
            await self._db.execute("DELETE FROM queue_items WHERE queue_id=$1", queue_id)
        else:
            await self._db.execute("DELETE FROM queue_items WHERE queue_id=$1 AND partition=$2", queue_id, partition)

    async def queue_stats(self, queue_id: str) -> tuple[int, int]:
        """(number of non-empty partitions, total items)."""
        row = await self._db.fetchrow(
            "SELECT count(DISTINCT partition), count(*) FROM queue_items WHERE queue_id=$1", queue_id
        )
        return int(row[0]), int(row[1])


class _NotAllNew(Exception):
    """Rolls back an only-new dict put that met an existing key."""
