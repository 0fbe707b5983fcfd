"""What the scheduler asks of SQLite's input table on every tick reads only the queued inputs, however many
finished ones the retention period keeps (PostgreSQL has had partial indexes of the queued inputs from the start)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from berth.config import Settings
from berth.store.factory import open_stores
from berth.store.sqlite.store import (
    CLAIM_HEAD_SQL,
    CLAIM_SQL,
    LEASED_BY,
    OUTPUTS_AFTER_SQL,
    OUTPUTS_IN_SPAN_SQL,
    RESTART_LEASES_SQL,
)


def _plan(db: Path, sql: str) -> str:
    with sqlite3.connect(db) as conn:
        return " ".join(str(row[-1]) for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}"))


def _migrated(tmp_path: Path) -> Path:
    async def migrate() -> None:
        stores = await open_stores(Settings(data_dir=tmp_path / "data"))
        await stores.close()

    asyncio.run(migrate())
    (db,) = (tmp_path / "data").glob("*.db")
    return db


def test_a_claim_reads_the_queue_in_order_without_sorting_it(tmp_path: Path) -> None:
    db = _migrated(tmp_path)
    for sql in (CLAIM_HEAD_SQL, CLAIM_SQL):
        plan = _plan(db, sql.replace("?", "1"))
        assert "inputs_queue " in plan + " " and "TEMP B-TREE" not in plan, plan


def test_a_containers_leases_are_found_without_its_finished_inputs(tmp_path: Path) -> None:
    db = _migrated(tmp_path)
    restart = RESTART_LEASES_SQL.format(marks=",".join("'i'" for _ in range(16))).replace("?", "1")
    assert "inputs_holder" not in _plan(db, restart) and "(input_id=?)" in _plan(db, restart)
    held = f"SELECT input_id FROM inputs {LEASED_BY} WHERE holder='t' AND state='leased'"
    assert "inputs_leased_by" in _plan(db, held)


def test_a_window_of_a_calls_outputs_is_read_by_index_and_the_rest_in_order(tmp_path: Path) -> None:
    db = _migrated(tmp_path)
    assert "outputs_by_idx (call_id=? AND idx>? AND idx<?)" in _plan(db, OUTPUTS_IN_SPAN_SQL.replace("?", "1"))
    after = _plan(db, OUTPUTS_AFTER_SQL.replace("?", "1"))
    assert "outputs_call" in after and "TEMP B-TREE" not in after


def test_the_per_tick_queue_queries_use_the_index_of_queued_inputs(tmp_path: Path) -> None:
    db = _migrated(tmp_path)
    counts = "SELECT function_id, count(*) FROM inputs WHERE state='queued' AND not_before<=1 GROUP BY function_id"
    future = "SELECT min(not_before) FROM inputs WHERE state='queued' AND not_before>1"
    assert "inputs_queued" in _plan(db, counts)
    assert "inputs_queued" in _plan(db, future)
