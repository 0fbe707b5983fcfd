"""Helpers shared by the SQLite stores, which all use one connection."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable, Iterator
from typing import Any

from berth.errors import DiskFull

_FULL = frozenset({sqlite3.SQLITE_FULL})


class Connection(sqlite3.Connection):
    """sqlite3's connection, except that a write the full disk refused raises DiskFull (RESOURCE_EXHAUSTED,
    saying so) instead of an OperationalError the edge would report as an internal error. SQLite rolls the
    statement back; the data already stored stays as it was."""

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        try:
            return super().execute(sql, parameters)
        except sqlite3.OperationalError as exc:
            raise _translated(exc) from exc

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> sqlite3.Cursor:
        try:
            return super().executemany(sql, parameters)
        except sqlite3.OperationalError as exc:
            raise _translated(exc) from exc


def _translated(exc: sqlite3.OperationalError) -> Exception:
    if getattr(exc, "sqlite_errorcode", None) in _FULL or "disk is full" in str(exc):
        return DiskFull("SQLite: database or disk is full")
    return exc


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    """An immediate write transaction; statements inside must not await (nothing may interleave). A COMMIT
    that fails (a full disk) rolls back, so the connection is not left inside a transaction."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    try:
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
