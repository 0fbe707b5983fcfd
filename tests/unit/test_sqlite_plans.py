"""What the scheduler asks of SQLite's input table on every tick reads only the queued inputs, however many
finished ones the retention period keeps (PostgreSQL has had partial indexes of the queued inputs from the start)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from berth.config import Settings
from berth.store.factory import open_stores


def _plan(db: Path, sql: str) -> str:
    with sqlite3.connect(db) as conn:
        return " ".join(str(row[-1]) for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}"))


def test_the_per_tick_queue_queries_use_the_index_of_queued_inputs(tmp_path: Path) -> None:
    async def migrate() -> None:
        stores = await open_stores(Settings(data_dir=tmp_path / "data"))
        await stores.close()

    asyncio.run(migrate())
    (db,) = (tmp_path / "data").glob("*.db")
    counts = "SELECT function_id, count(*) FROM inputs WHERE state='queued' AND not_before<=1 GROUP BY function_id"
    future = "SELECT min(not_before) FROM inputs WHERE state='queued' AND not_before>1"
    assert "inputs_queued" in _plan(db, counts)
    assert "inputs_queued" in _plan(db, future)
