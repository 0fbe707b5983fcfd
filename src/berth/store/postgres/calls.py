"""The call path on PostgreSQL: calls, queued inputs and their leases, outputs and data channels.

Leases are compare-and-set in SQL, safe across server replicas: a claim locks the rows it takes with
`FOR UPDATE SKIP LOCKED` (a concurrent claimer skips them, and a row another claimer already leased fails
the re-checked `state='queued'`), and requeue/finish with a holder change a row only while that holder
still leases it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from berth.store.postgres.activity import CALL_COLS, PostgresActivity
from berth.store.postgres.db import Conn, Database
from berth.store.records import CallRecord, InputLease, InputState, OutputRecord

_INPUT_COLS = "input_id, call_id, function_id, idx, state, holder, attempt, payload, created_at"
_CALL_COLS = CALL_COLS

# The head of the queue picks the method; the batch takes only inputs of that method (@batched).
# Both subqueries lock what they read and skip what another claimer has locked.
_CLAIM = """
WITH head AS (
    SELECT method_name FROM inputs
    WHERE function_id=$1 AND state='queued' AND not_before<=$2
    ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED
), picked AS (
    SELECT seq, call_id FROM inputs
    WHERE function_id=$1 AND state='queued' AND not_before<=$2 AND method_name=(SELECT method_name FROM head)
    ORDER BY seq LIMIT $3 FOR UPDATE SKIP LOCKED
)
UPDATE inputs i SET state='leased', holder=$4, deadline=$5, started_at=$2
FROM picked p LEFT JOIN calls c ON c.call_id=p.call_id
WHERE i.seq=p.seq
RETURNING i.input_id, i.call_id, i.function_id, i.idx, i.payload, coalesce(c.invocation_type, 0), i.attempt, i.seq
"""

_FINISH = """
WITH done AS (
    UPDATE inputs SET state='done', deadline=NULL, finished_at=$4, status=$5
    WHERE input_id=$1 AND {cond} RETURNING call_id, idx
)
INSERT INTO outputs(call_id, input_id, idx, result, data_format, created_at)
SELECT call_id, $1, idx, $2, $3, $4 FROM done
RETURNING seq, call_id, idx
"""


def _input_state(row: Sequence[Any]) -> InputState:
    input_id, call_id, function_id, idx, state, holder, attempt, payload, created_at = row
    return InputState(input_id, call_id, function_id, idx, state, holder, attempt, bytes(payload), created_at)


class CallTables(PostgresActivity):
    def __init__(self, db: Database) -> None:
        self._db = db

    async def _inputs(self, where: str, *args: Any) -> list[InputState]:
        return [_input_state(r) for r in await self._db.fetch(f"SELECT {_INPUT_COLS} FROM inputs WHERE {where}", *args)]

    # calls
    async def create_call(self, call: CallRecord) -> None:
        await self._db.write(
            f"INSERT INTO calls({_CALL_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            call.call_id,
            call.function_id,
            call.call_type,
            call.invocation_type,
            call.return_exceptions,
            call.num_inputs,
            call.inputs_finished,
            call.created_at,
            call.parent_input_id,
        )

    async def get_call(self, call_id: str) -> CallRecord | None:
        row = await self._db.fetchrow(f"SELECT {_CALL_COLS} FROM calls WHERE call_id=$1", call_id)
        return CallRecord(*row) if row else None

    async def finish_call_inputs(self, call_id: str, num_inputs: int | None = None) -> None:
        await self._db.execute(
            "UPDATE calls SET inputs_finished=TRUE, num_inputs=coalesce($2, num_inputs) WHERE call_id=$1",
            call_id,
            num_inputs,
        )

    # inputs
    async def add_inputs(
        self, call_id: str, function_id: str, items: Iterable[tuple[str, int, str, bytes]], now: float
    ) -> None:
        rows = [(iid, call_id, function_id, idx, method, payload, "queued", now) for iid, idx, method, payload in items]

        async def body(conn: Conn) -> None:
            await conn.executemany(
                "INSERT INTO inputs(input_id, call_id, function_id, idx, method_name, payload, state, created_at) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                rows,
            )
            await conn.execute("UPDATE calls SET num_inputs = num_inputs + $1 WHERE call_id=$2", len(rows), call_id)

        # Not idempotent (the count is added to): retried only if the connection failed before COMMIT.
        await self._db.transaction(body)

    async def claim_inputs(
        self, function_id: str, holder: str, limit: int, now: float, timeout_s: float | None
    ) -> list[InputLease]:
        """Atomically lease up to `limit` queued inputs, all for the same method (as @batched requires)."""
        deadline = now + timeout_s if timeout_s else None
        rows = await self._db.write(_CLAIM, function_id, now, limit, holder, deadline)
        rows.sort(key=lambda r: r[7])
        return [InputLease(r[0], r[1], r[2], r[3], bytes(r[4]), r[5], r[6], holder, deadline) for r in rows]

    async def restart_leases(self, holder: str, input_ids: Sequence[str], now: float, deadline: float | None) -> None:
        if input_ids:
            await self._db.execute(
                "UPDATE inputs SET deadline=$1, started_at=$2 WHERE state='leased' AND holder=$3 AND input_id=ANY($4)",
                deadline,
                now,
                holder,
                list(input_ids),
            )

    async def get_input(self, input_id: str) -> InputState | None:
        found = await self._inputs("input_id=$1", input_id)
        return found[0] if found else None

    async def inputs_held_by(self, holder: str) -> list[InputState]:
        return await self._inputs("holder=$1 AND state='leased' ORDER BY seq", holder)

    async def request_cancel(self, input_id: str, holder: str, terminate: bool) -> bool:
        touched = await self._db.execute(
            "UPDATE inputs SET cancel_for=$2, cancel_kind=$3 WHERE input_id=$1 AND state='leased' AND holder=$2",
            input_id,
            holder,
            2 if terminate else 1,
        )
        return touched == 1

    async def take_cancels(self, holder: str) -> list[tuple[str, bool]]:
        rows = await self._db.transaction(
            lambda c: c.fetch(
                "UPDATE inputs SET cancel_for=NULL WHERE holder=$1 AND cancel_for=$1 AND state='leased' "
                "RETURNING input_id, cancel_kind",
                holder,
            )
        )
        return [(r[0], r[1] == 2) for r in rows]

    async def requeue_input(self, input_id: str, attempt: int, not_before: float, holder: str | None = None) -> bool:
        sql = "UPDATE inputs SET state='queued', holder=NULL, deadline=NULL, attempt=$2, not_before=$3 "
        sql += "WHERE input_id=$1"
        if holder is None:
            rows = await self._db.write(sql + " AND state<>'done' RETURNING 1", input_id, attempt, not_before)
        else:
            cond = " AND state='leased' AND holder=$4 RETURNING 1"
            rows = await self._db.write(sql + cond, input_id, attempt, not_before, holder)
        return len(rows) == 1

    async def finish_input(
        self, input_id: str, holder: str | None, result: bytes, data_format: int, now: float, status: int = 0
    ) -> OutputRecord | None:
        """Mark an input done and append its output, in one statement. With a holder given, only the
        container that holds the lease may finish it; a stale or foreign output is dropped."""
        if holder is None:
            sql = _FINISH.format(cond="state<>'done'")
            args: tuple[Any, ...] = (input_id, result, data_format, now, status)
        else:
            sql = _FINISH.format(cond="state='leased' AND holder=$6")
            args = (input_id, result, data_format, now, status, holder)

        async def body(conn: Conn) -> Any:
            # Readers page a call's outputs by seq (outputs_after). Serial values are taken at insert and
            # become visible at commit, so two finishes of one call committing out of order would let a
            # reader skip the lower seq for good. A per-call transaction lock makes seq order commit order.
            call_id = await conn.fetchval("SELECT call_id FROM inputs WHERE input_id=$1", input_id)
            if call_id is None:
                return []
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 7))", call_id)
            return await conn.fetch(sql, *args)

        rows = await self._db.transaction(body)
        if not rows:
            return None
        seq, call_id, idx = rows[0]
        return OutputRecord(int(seq), call_id, input_id, idx, result, data_format, 0)

    async def queued_counts(self, now: float) -> dict[str, int]:
        rows = await self._db.fetch(
            "SELECT function_id, count(*) FROM inputs WHERE state='queued' AND not_before<=$1 GROUP BY function_id",
            now,
        )
        return {r[0]: int(r[1]) for r in rows}

    async def has_future_inputs(self, now: float) -> float | None:
        sql = "SELECT min(not_before) FROM inputs WHERE state='queued' AND not_before>$1"
        value = await self._db.fetchval(sql, now)
        return float(value) if value is not None else None

    async def expired_leases(self, now: float) -> list[InputState]:
        return await self._inputs("state='leased' AND deadline IS NOT NULL AND deadline<$1 ORDER BY seq", now)

    async def open_inputs_of_call(self, call_id: str) -> list[InputState]:
        return await self._inputs("call_id=$1 AND state<>'done' ORDER BY seq", call_id)

    async def queued_inputs_of_function(self, function_id: str) -> list[InputState]:
        return await self._inputs("function_id=$1 AND state='queued' ORDER BY seq", function_id)

    async def unfinished_count(self, call_id: str) -> int:
        return int(await self._db.fetchval("SELECT count(*) FROM inputs WHERE call_id=$1 AND state<>'done'", call_id))

    # outputs
    async def outputs_after(
        self, call_id: str, cursor: int, limit: int, idx_range: tuple[int, int] | None = None
    ) -> list[OutputRecord]:
        low, high = idx_range if idx_range is not None else (-1, 2**31 - 1)
        rows = await self._db.fetch(
            "SELECT seq, call_id, input_id, idx, result, data_format, retry_count FROM outputs "
            "WHERE call_id=$1 AND seq>$2 AND idx BETWEEN $3 AND $4 ORDER BY seq LIMIT $5",
            call_id,
            cursor,
            low,
            high,
            limit,
        )
        return [OutputRecord(r[0], r[1], r[2], r[3], bytes(r[4]), r[5], r[6]) for r in rows]

    async def delete_outputs(self, seqs: Sequence[int]) -> None:
        if seqs:
            await self._db.execute("DELETE FROM outputs WHERE seq = ANY($1::bigint[])", list(seqs))

    # data channels (generators, web endpoints)
    async def put_chunks(self, call_id: str, direction: str, chunks: Iterable[tuple[int, bytes]]) -> None:
        rows = [(call_id, direction, idx, data) for idx, data in chunks]
        if not rows:
            return

        async def body(conn: Conn) -> None:
            await conn.executemany(
                "INSERT INTO data_chunks(call_id, direction, idx, chunk) VALUES ($1, $2, $3, $4) "
                "ON CONFLICT DO NOTHING",
                rows,
            )

        await self._db.transaction(body, idempotent=True)

    async def drop_call_data(self, call_id: str) -> None:
        """Data channels of a finished web call: bodies of any size must not pile up."""
        await self._db.execute("DELETE FROM data_chunks WHERE call_id=$1", call_id)

    async def chunks_after(self, call_id: str, direction: str, last_index: int) -> list[tuple[int, bytes]]:
        rows = await self._db.fetch(
            "SELECT idx, chunk FROM data_chunks WHERE call_id=$1 AND direction=$2 AND idx>$3 ORDER BY idx",
            call_id,
            direction,
            last_index,
        )
        return [(r[0], bytes(r[1])) for r in rows]

    # recovery and retention
    async def release_all_leases(self) -> int:
        """At start-up no container of a previous process is alive: put their inputs back."""
        rows = await self._db.write(
            "UPDATE inputs SET state='queued', holder=NULL, deadline=NULL WHERE state='leased' RETURNING 1"
        )
        return len(rows)

    async def prune(self, before: float) -> int:
        """Forget finished calls (inputs, outputs, data), ended tasks and logs older than `before`."""

        async def body(conn: Conn) -> int:
            old = [
                r[0]
                for r in await conn.fetch(
                    "SELECT call_id FROM calls c WHERE created_at<$1 AND NOT EXISTS "
                    "(SELECT 1 FROM inputs i WHERE i.call_id=c.call_id AND i.state<>'done')",
                    before,
                )
            ]
            for table in ("inputs", "outputs", "data_chunks", "calls"):
                await conn.execute(f"DELETE FROM {table} WHERE call_id = ANY($1::text[])", old)
            await conn.execute("DELETE FROM tasks WHERE ended_at IS NOT NULL AND ended_at<$1", before)
            await conn.execute("DELETE FROM logs WHERE created_at<$1", before)
            return len(old)

        return await self._db.transaction(body)
