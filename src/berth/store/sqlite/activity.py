"""The ActivityStore on SQLite: what observability reads about the inputs, calls and containers of
functions over a time window. A mixin of SqliteStore (one connection, one file)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from berth.store.records import CallRecord, InputRecord, TaskOutcome, TaskRecord

INPUT_RECORD_COLS = (
    "input_id, call_id, function_id, method_name, state, holder, attempt, created_at, started_at, finished_at, status"
)
CALL_COLS = (
    "call_id, function_id, call_type, invocation_type, return_exceptions, num_inputs, inputs_finished, created_at, "
    "parent_input_id"
)
# A task's result is recorded only when its container failed (see TaskManager); its first input is the
# earliest start among the inputs it held.
_TASK_OUTCOME = (
    "SELECT t.task_id, t.function_id, t.app_id, t.state, t.secret_hash, t.created_at, t.ended_at, "
    "t.result IS NOT NULL, (SELECT min(i.started_at) FROM inputs i WHERE i.holder=t.task_id), t.exit_reason "
    "FROM tasks t "
)


def input_record(row: Sequence[Any]) -> InputRecord:
    return InputRecord(*row)


def call_record(row: Sequence[Any]) -> CallRecord:
    return CallRecord(row[0], row[1], row[2], row[3], bool(row[4]), row[5], bool(row[6]), row[7], row[8])


def task_outcome(row: Sequence[Any]) -> TaskOutcome:
    return TaskOutcome(TaskRecord(*row[:7]), bool(row[7]), row[8], row[9])


def _marks(values: Sequence[Any]) -> str:
    return ",".join("?" * len(values))


class SqliteActivity:
    _db: sqlite3.Connection

    async def inputs_of_functions(
        self, function_ids: Sequence[str], since: float, until: float, limit: int, newest_first: bool
    ) -> list[InputRecord]:
        if not function_ids:
            return []
        order = "DESC" if newest_first else "ASC"
        rows = self._db.execute(
            f"SELECT {INPUT_RECORD_COLS} FROM inputs WHERE function_id IN ({_marks(function_ids)}) "
            f"AND created_at>=? AND created_at<? ORDER BY created_at {order}, seq {order} LIMIT ?",
            (*function_ids, since, until, limit),
        ).fetchall()
        return [input_record(r) for r in rows]

    async def inputs_of_calls(self, call_ids: Sequence[str]) -> list[InputRecord]:
        if not call_ids:
            return []
        rows = self._db.execute(
            f"SELECT {INPUT_RECORD_COLS} FROM inputs WHERE call_id IN ({_marks(call_ids)}) ORDER BY seq", call_ids
        ).fetchall()
        return [input_record(r) for r in rows]

    async def calls_made_by(self, input_ids: Sequence[str]) -> list[CallRecord]:
        if not input_ids:
            return []
        rows = self._db.execute(
            f"SELECT {CALL_COLS} FROM calls WHERE parent_input_id IN ({_marks(input_ids)}) ORDER BY created_at",
            input_ids,
        ).fetchall()
        return [call_record(r) for r in rows]

    async def tasks_of_functions(self, function_ids: Sequence[str], since: float, until: float) -> list[TaskOutcome]:
        if not function_ids:
            return []
        rows = self._db.execute(
            _TASK_OUTCOME + f"WHERE t.function_id IN ({_marks(function_ids)}) AND t.created_at<? "
            "AND (t.ended_at IS NULL OR t.ended_at>=?) ORDER BY t.created_at",
            (*function_ids, until, since),
        ).fetchall()
        return [task_outcome(r) for r in rows]
