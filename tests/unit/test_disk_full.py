"""A full disk is named, not reported as an internal error: OSError ENOSPC anywhere down an error's chain,
and SQLite's SQLITE_FULL, become DiskFull (RESOURCE_EXHAUSTED), and a refused write leaves the connection
usable once space returns. SQLite's max_page_count stands in for the disk here."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

import pytest
from grpclib.const import Status

from berth.errors import DiskFull, disk_full
from berth.store.sqlite.connection import Connection, transaction


def test_enospc_anywhere_down_the_chain_is_disk_full() -> None:
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as inner:
            raise RuntimeError("writing the blob failed") from inner
    except RuntimeError as outer:
        found = disk_full(outer)
    assert found is not None and found.status is Status.RESOURCE_EXHAUSTED
    assert "disk is full" in found.message
    assert disk_full(OSError(errno.EACCES, "denied")) is None
    assert disk_full(ValueError("x")) is None


def test_a_full_sqlite_database_raises_disk_full_and_recovers_when_space_returns(tmp_path: Path) -> None:
    db = sqlite3.connect(str(tmp_path / "db"), isolation_level=None, factory=Connection)
    db.execute("CREATE TABLE t(v BLOB)")
    with transaction(db):
        db.execute("INSERT INTO t VALUES (?)", (b"kept",))
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count={pages}")
    with pytest.raises(DiskFull), transaction(db):
        db.execute("INSERT INTO t VALUES (?)", (b"x" * 100_000,))
    assert not db.in_transaction
    assert db.execute("SELECT v FROM t").fetchall() == [(b"kept",)]
    db.execute("PRAGMA max_page_count=100000")
    with transaction(db):
        db.execute("INSERT INTO t VALUES (?)", (b"after",))
    assert db.execute("SELECT count(*) FROM t").fetchone()[0] == 2
