"""The ActivityStore on PostgreSQL: what observability reads about the inputs, calls and containers of
functions over a time window. A mixin of PostgresCoreStore."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from berth.store.postgres.db import Database
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


def _input_record(row: Sequence[Any]) -> InputRecord:
    return InputRecord(*row)


class PostgresActivity:
    _db: Database

    async def inputs_of_functions(
        self, function_ids: Sequence[str], since: float, until: float, limit: int, newest_first: bool
    ) -> list[InputRecord]:
        order = "DESC" if newest_first else "ASC"
        rows = await self._db.fetch(
            f"SELECT {INPUT_RECORD_COLS} FROM inputs WHERE function_id = ANY($1::text[]) "
            f"AND created_at>=$2 AND created_at<$3 ORDER BY created_at {order}, seq {order} LIMIT $4",
            list(function_ids),
            since,
            until,
            limit,
        )
        return [_input_record(r) for r in rows]

    async def inputs_of_calls(self, call_ids: Sequence[str]) -> list[InputRecord]:
        rows = await self._db.fetch(
            f"SELECT {INPUT_RECORD_COLS} FROM inputs WHERE call_id = ANY($1::text[]) ORDER BY seq", list(call_ids)
        )
        return [_input_record(r) for r in rows]

    async def calls_made_by(self, input_ids: Sequence[str]) -> list[CallRecord]:
        rows = await self._db.fetch(
            f"SELECT {CALL_COLS} FROM calls WHERE parent_input_id = ANY($1::text[]) ORDER BY created_at",
            list(input_ids),
        )
        return [CallRecord(*r) for r in rows]

    async def tasks_of_functions(self, function_ids: Sequence[str], since: float, until: float) -> list[TaskOutcome]:
        rows = await self._db.fetch(
            _TASK_OUTCOME + "WHERE t.function_id = ANY($1::text[]) AND t.created_at<$2 "
            "AND (t.ended_at IS NULL OR t.ended_at>=$3) ORDER BY t.created_at",
            list(function_ids),
            until,
            since,
        )
        return [TaskOutcome(TaskRecord(*r[:7]), bool(r[7]), r[8], r[9]) for r in rows]
