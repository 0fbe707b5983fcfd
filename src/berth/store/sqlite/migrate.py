"""Applies the SQLite migrations (store/migrations/sqlite) to one database file.

`executescript` would commit on its own, so each migration is split into statements and run inside one
`BEGIN IMMEDIATE` transaction together with its `schema_migrations` row: a migration is applied whole
or not at all, and a second process opening the same file waits for the write lock, then sees it done."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from berth.store.migrations import Migration, load
from berth.store.sqlite.connection import transaction

_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations "
    "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
)


def statements(sql: str) -> list[str]:
    """The statements of a script, split where sqlite3 says one is complete (not at every ';')."""
    out: list[str] = []
    buf = ""
    for line in sql.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    if any(ln.strip() and not ln.strip().startswith("--") for ln in buf.splitlines()):
        raise ValueError(f"incomplete statement at the end of a migration: {buf.strip()[:80]}")
    return out


def applied_versions(db: sqlite3.Connection) -> set[int]:
    return {int(r[0]) for r in db.execute("SELECT version FROM schema_migrations")}


def migrate(db: sqlite3.Connection, source: str | Path = "sqlite") -> list[int]:
    """Applies the missing migrations in order; returns the versions it applied."""
    db.execute(_TABLE)
    done: list[int] = []
    for migration in load(source):
        if _apply(db, migration):
            done.append(migration.version)
    return done


def _apply(db: sqlite3.Connection, migration: Migration) -> bool:
    with transaction(db):
        # Checked inside the write lock: another process may have applied it since we looked.
        if migration.version in applied_versions(db):
            return False
        for stmt in statements(migration.sql):
            db.execute(stmt)
        db.execute(
            "INSERT INTO schema_migrations(version, name, applied_at) "
            "VALUES (?, ?, (julianday('now') - 2440587.5) * 86400.0)",
            (migration.version, migration.name),
        )
    return True
