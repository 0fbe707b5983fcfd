"""SQLite implementation of the store. One connection, WAL, and every write commits before it returns,
so state is persisted before anyone is notified of it.

Statements run synchronously on the event loop's thread: each is tens of microseconds, far less than
a hop to a worker thread, and since no statement awaits, operations never interleave mid-transaction."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from modal_proto import api_pb2

from berth.store.records import (
    APP_COLS,
    TASK_COLS,
    TOKEN_COLS,
    AppRecord,
    CallRecord,
    FunctionRecord,
    InputLease,
    InputState,
    OutputRecord,
    ReplicaRecord,
    TaskRecord,
    TokenRecord,
)
from berth.store.sqlite.activity import CALL_COLS, SqliteActivity, call_record
from berth.store.sqlite.connection import Connection, transaction
from berth.store.sqlite.migrate import migrate

_INPUT_COLS = "input_id, call_id, function_id, idx, state, holder, attempt, payload, created_at"


def _input_state(row: Sequence[Any]) -> InputState:
    input_id, call_id, function_id, idx, state, holder, attempt, payload, created_at = row
    return InputState(input_id, call_id, function_id, idx, state, holder, attempt, bytes(payload), created_at)



# A container's leased inputs, by holder: inputs_holder(holder) also covers every input a container ever
# held (the holder stays on finished rows, for the activity views), so a lookup through it grows with the
# container's history; inputs_leased_by holds only the leases. A lease is updated by its input_id, the
# holder and state only checked (`+` keeps SQLite from choosing inputs_holder for them).
LEASED_BY = "INDEXED BY inputs_leased_by"
RESTART_LEASES_SQL = (
    "UPDATE inputs SET deadline=?, started_at=? WHERE input_id IN ({marks}) AND +state='leased' AND +holder=?"
)

# A call's outputs after a cursor, in order; `FunctionCall.iter()` asks for windows of indexes with the cursor
# at 0, which through outputs_call(call_id, seq) read every output of the call before the window, each time
# (reading back a million outputs never ended): a window is read through outputs_by_idx(call_id, idx).
_OUTPUTS = "SELECT seq, call_id, input_id, idx, result, data_format, retry_count FROM outputs {index} "
_AFTER = "WHERE call_id=? AND seq>? AND idx BETWEEN ? AND ? ORDER BY seq LIMIT ?"
OUTPUTS_AFTER_SQL = _OUTPUTS.format(index="INDEXED BY outputs_call") + _AFTER
OUTPUTS_IN_SPAN_SQL = _OUTPUTS.format(index="INDEXED BY outputs_by_idx") + _AFTER

# Claims read the queue in seq order through inputs_queue(function_id, state, seq), named: left to itself,
# SQLite picks inputs_queued(function_id, not_before) for the not_before range and then sorts every queued
# input of the function for each claim (a million queued inputs drained at 150 a second).
CLAIM_HEAD_SQL = (
    "SELECT method_name FROM inputs INDEXED BY inputs_queue WHERE function_id=? AND state='queued' "
    "AND not_before<=? ORDER BY seq LIMIT 1"
)
CLAIM_SQL = (
    "UPDATE inputs SET state='leased', holder=?, deadline=?, started_at=? WHERE seq IN ("
    " SELECT seq FROM inputs INDEXED BY inputs_queue WHERE function_id=? AND state='queued' AND not_before<=?"
    " AND method_name=? ORDER BY seq LIMIT ?) "
    "RETURNING input_id, call_id, function_id, idx, payload, attempt, seq"
)

class SqliteStore(SqliteActivity):
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        # A call's invocation type never changes; claims look it up for every input.
        self._invocation_types: dict[str, int] = {}

    @classmethod
    async def open(cls, path: Path) -> SqliteStore:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, factory=Connection)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=5000")
        migrate(db)
        return cls(db)

    async def close(self) -> None:
        self._db.close()

    @property
    def connection(self) -> sqlite3.Connection:
        """The shared connection, for the other SQLite stores of this package (one file, one writer)."""
        return self._db

    def _one(self, sql: str, args: Sequence[Any] = ()) -> Any:
        return self._db.execute(sql, args).fetchone()

    def _all(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        return self._db.execute(sql, args).fetchall()

    def _write(self, sql: str, args: Sequence[Any] = ()) -> int:
        return self._db.execute(sql, args).rowcount

    def _tx(self) -> contextlib.AbstractContextManager[None]:
        return transaction(self._db)

    # tokens
    async def add_token(self, token_id: str, secret_hash: str, environment: str | None, now: float) -> None:
        self._write(
            "INSERT INTO tokens(token_id, secret_hash, environment, created_at) VALUES (?,?,?,?)",
            (token_id, secret_hash, environment, now),
        )

    async def add_service_user(
        self, token_id: str, secret_hash: str, name: str, now: float, expires_at: float | None
    ) -> bool:
        return (
            self._write(
                "INSERT INTO tokens(token_id, secret_hash, created_at, name, expires_at) VALUES (?,?,?,?,?) "
                "ON CONFLICT DO NOTHING",
                (token_id, secret_hash, now, name, expires_at),
            )
            == 1
        )

    async def token(self, token_id: str, now: float) -> tuple[str, str] | None:
        row = self._one(
            "SELECT secret_hash, coalesce(environment, '') FROM tokens WHERE token_id=? AND revoked_at IS NULL "
            "AND disabled_at IS NULL AND (expires_at IS NULL OR expires_at > ?)",
            (token_id, now),
        )
        return (str(row[0]), str(row[1])) if row else None

    async def token_records(self) -> list[TokenRecord]:
        return [TokenRecord(*r) for r in self._all(f"SELECT {TOKEN_COLS} FROM tokens ORDER BY created_at")]

    async def set_token_disabled(self, token_id: str, disabled_at: float | None) -> bool:
        changed = self._write(
            "UPDATE tokens SET disabled_at=? WHERE token_id=? AND revoked_at IS NULL", (disabled_at, token_id)
        )
        return changed == 1

    async def tokens(self) -> list[tuple[str, str, float, float | None]]:
        rows = self._all(
            "SELECT token_id, coalesce(environment, ''), created_at, revoked_at FROM tokens ORDER BY created_at"
        )
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    async def revoke_token(self, token_id: str, now: float) -> bool:
        return (
            self._write("UPDATE tokens SET revoked_at=? WHERE token_id=? AND revoked_at IS NULL", (now, token_id)) == 1
        )

    # dashboard sign-ins
    async def add_dashboard_grant(self, digest: str, kind: str, token_id: str, expires_at: float) -> None:
        self._write(
            "INSERT INTO dashboard_grants(digest, kind, token_id, expires_at) VALUES (?,?,?,?)",
            (digest, kind, token_id, expires_at),
        )

    async def redeem_dashboard_link(self, digest: str, now: float) -> str | None:
        row = self._one(
            "UPDATE dashboard_grants SET used_at=? WHERE digest=? AND kind='link' AND used_at IS NULL "
            "AND expires_at>? RETURNING token_id",
            (now, digest, now),
        )
        return str(row[0]) if row else None

    async def dashboard_session(self, digest: str, now: float) -> str | None:
        row = self._one(
            "SELECT token_id FROM dashboard_grants WHERE digest=? AND kind='session' AND expires_at>?", (digest, now)
        )
        return str(row[0]) if row else None

    async def end_dashboard_session(self, digest: str) -> None:
        self._write("DELETE FROM dashboard_grants WHERE digest=? AND kind='session'", (digest,))

    # apps
    async def put_app(self, app: AppRecord) -> None:
        self._write(
            f"INSERT INTO apps({APP_COLS}) VALUES (?,?,?,?,?,?,?) ON CONFLICT(app_id) DO UPDATE SET "
            "name=excluded.name, description=excluded.description, state=excluded.state, "
            "environment=excluded.environment, created_at=excluded.created_at, stopped_at=excluded.stopped_at",
            (app.app_id, app.name, app.description, app.state, app.environment, app.created_at, app.stopped_at),
        )

    async def get_app(self, app_id: str) -> AppRecord | None:
        row = self._one(f"SELECT {APP_COLS} FROM apps WHERE app_id=?", (app_id,))
        return AppRecord(*row) if row else None

    async def set_app_state(self, app_id: str, state: int, stopped_at: float | None = None) -> None:
        self._write("UPDATE apps SET state=?, stopped_at=? WHERE app_id=?", (state, stopped_at, app_id))

    _LIVE_APP_STATES = (api_pb2.APP_STATE_EPHEMERAL, api_pb2.APP_STATE_INITIALIZING)

    async def app_heartbeat(self, app_id: str, now: float) -> None:
        self._write("UPDATE apps SET heartbeat_at=? WHERE app_id=?", (now, app_id))

    async def silent_apps(self, before: float) -> list[str]:
        rows = self._all(
            "SELECT app_id FROM apps WHERE state IN (?,?) AND coalesce(heartbeat_at, created_at)<?",
            (*self._LIVE_APP_STATES, before),
        )
        return [r[0] for r in rows]

    async def touch_live_apps(self, now: float) -> None:
        self._write("UPDATE apps SET heartbeat_at=? WHERE state IN (?,?)", (now, *self._LIVE_APP_STATES))

    # environment roles
    async def set_environment_role(self, environment: str, token_id: str, role: str | None) -> None:
        if role is None:
            self._write("DELETE FROM environment_roles WHERE environment=? AND token_id=?", (environment, token_id))
        else:
            self._write(
                "INSERT INTO environment_roles(environment, token_id, role) VALUES (?,?,?) "
                "ON CONFLICT(environment, token_id) DO UPDATE SET role=excluded.role",
                (environment, token_id, role),
            )

    async def environment_roles(self) -> list[tuple[str, str, str]]:
        rows = self._all("SELECT environment, token_id, role FROM environment_roles ORDER BY environment, token_id")
        return [(r[0], r[1], r[2]) for r in rows]

    # autoscaler overrides
    async def put_autoscaler_override(self, function_id: str, configuration: bytes, now: float) -> None:
        self._write(
            "INSERT INTO autoscaler_overrides(function_id, configuration, updated_at) VALUES (?,?,?) "
            "ON CONFLICT(function_id) DO UPDATE SET configuration=excluded.configuration, "
            "updated_at=excluded.updated_at",
            (function_id, configuration, now),
        )

    async def autoscaler_overrides(self) -> dict[str, bytes]:
        return {r[0]: bytes(r[1]) for r in self._all("SELECT function_id, configuration FROM autoscaler_overrides")}

    async def delete_autoscaler_override(self, function_id: str) -> None:
        self._write("DELETE FROM autoscaler_overrides WHERE function_id=?", (function_id,))

    # sandboxes, across replicas
    async def add_sandbox(self, sandbox_id: str, app_id: str, name: str, now: float) -> str | None:
        with self._tx():
            added = self._write(
                "INSERT INTO sandboxes(sandbox_id, app_id, name, created_at) VALUES (?,?,?,?) ON CONFLICT DO NOTHING",
                (sandbox_id, app_id, name, now),
            )
            if added:
                return None
            row = self._one(
                "SELECT sandbox_id FROM sandboxes WHERE app_id=? AND name=? AND name!='' AND ended_at IS NULL",
                (app_id, name),
            )
        return str(row[0]) if row else sandbox_id

    async def end_sandbox(self, sandbox_id: str, now: float) -> None:
        self._write("UPDATE sandboxes SET ended_at=? WHERE sandbox_id=? AND ended_at IS NULL", (now, sandbox_id))

    async def running_sandboxes(self, app_id: str) -> list[str]:
        where = "ended_at IS NULL" + (" AND app_id=?" if app_id else "")
        rows = self._all(
            f"SELECT sandbox_id FROM sandboxes WHERE {where} ORDER BY created_at DESC", (app_id,) if app_id else ()
        )
        return [r[0] for r in rows]

    async def running_sandbox_named(self, app_id: str, name: str) -> str | None:
        row = self._one(
            "SELECT sandbox_id FROM sandboxes WHERE app_id=? AND name=? AND ended_at IS NULL", (app_id, name)
        )
        return str(row[0]) if row else None

    async def request_sandbox_stop(self, sandbox_id: str, now: float) -> bool:
        return (
            self._write(
                "UPDATE sandboxes SET stop_requested_at=coalesce(stop_requested_at, ?) "
                "WHERE sandbox_id=? AND ended_at IS NULL",
                (now, sandbox_id),
            )
            == 1
        )

    async def sandbox_stops_requested(self, sandbox_ids: Sequence[str]) -> list[str]:
        if not sandbox_ids:
            return []
        marks = ",".join("?" * len(sandbox_ids))
        rows = self._all(
            f"SELECT sandbox_id FROM sandboxes WHERE sandbox_id IN ({marks}) AND ended_at IS NULL "
            "AND stop_requested_at IS NOT NULL",
            tuple(sandbox_ids),
        )
        return [r[0] for r in rows]

    # server replicas
    async def join_replica(self, replica: ReplicaRecord) -> None:
        with self._tx():
            self._write("DELETE FROM replicas WHERE name=?", (replica.name,))
            self._write(
                "INSERT INTO replicas(replica_id, name, started_at, seen_at, info) VALUES (?,?,?,?,?)",
                (replica.replica_id, replica.name, replica.started_at, replica.seen_at, replica.info),
            )

    async def replica_beat(self, replica_id: str, now: float, info: bytes) -> bool:
        return self._write("UPDATE replicas SET seen_at=?, info=? WHERE replica_id=?", (now, info, replica_id)) == 1

    async def leave_replica(self, replica_id: str) -> None:
        self._write("DELETE FROM replicas WHERE replica_id=?", (replica_id,))

    async def live_replicas(self, seen_after: float) -> list[ReplicaRecord]:
        rows = self._all(
            "SELECT replica_id, name, started_at, seen_at, info FROM replicas WHERE seen_at>? ORDER BY name",
            (seen_after,),
        )
        return [ReplicaRecord(r[0], r[1], r[2], r[3], bytes(r[4])) for r in rows]

    async def release_orphans(self, seen_after: float, now: float) -> list[str]:
        orphans = (
            "SELECT task_id FROM tasks WHERE ended_at IS NULL AND replica_id NOT IN (SELECT replica_id FROM replicas)"
        )
        with self._tx():
            self._write("DELETE FROM replicas WHERE seen_at<=?", (seen_after,))
            functions = [
                r[0]
                for r in self._all(
                    f"SELECT DISTINCT function_id FROM inputs {LEASED_BY} "
                    f"WHERE state='leased' AND holder IN ({orphans})",
                    (),
                )
            ]
            self._write(
                f"UPDATE inputs SET state='queued', holder=NULL, deadline=NULL "
                f"WHERE state='leased' AND holder IN ({orphans})"
            )
            self._write(f"UPDATE tasks SET state='lost', ended_at=? WHERE task_id IN ({orphans})", (now,))
        return functions

    # functions and classes
    async def put_function(self, fn: FunctionRecord) -> None:
        self._write(
            "INSERT OR REPLACE INTO functions VALUES (?,?,?,?,?,?,?)",
            (fn.function_id, fn.app_id, fn.tag, fn.definition, fn.bound_from, fn.serialized_params, fn.options),
        )

    async def get_function(self, function_id: str) -> FunctionRecord | None:
        row = self._one("SELECT * FROM functions WHERE function_id=?", (function_id,))
        return FunctionRecord(*row) if row else None

    async def find_bound_function(self, parent_id: str, params: bytes, options: bytes) -> str | None:
        row = self._one(
            "SELECT function_id FROM functions WHERE bound_from=? AND serialized_params=? AND options=?",
            (parent_id, params, options),
        )
        return str(row[0]) if row else None

    async def put_class(self, class_id: str, app_id: str, tag: str, metadata: bytes) -> None:
        self._write("INSERT OR REPLACE INTO classes VALUES (?,?,?,?)", (class_id, app_id, tag, metadata))

    async def bound_functions(self, parent_id: str) -> list[FunctionRecord]:
        rows = self._all("SELECT * FROM functions WHERE bound_from=? ORDER BY rowid DESC", (parent_id,))
        return [FunctionRecord(*r) for r in rows]

    async def get_class(self, class_id: str) -> tuple[str, bytes] | None:
        row = self._one("SELECT app_id, metadata FROM classes WHERE class_id=?", (class_id,))
        return (str(row[0]), bytes(row[1])) if row else None

    # generic named objects (mounts, images, ...)
    async def put_object(
        self,
        kind: str,
        object_id: str,
        body: bytes,
        now: float,
        *,
        key: str | None = None,
        name: str | None = None,
        namespace: int = 0,
        environment: str = "",
        app_id: str | None = None,
    ) -> None:
        self._write(
            "INSERT OR REPLACE INTO objects VALUES (?,?,?,?,?,?,?,?,?)",
            (object_id, kind, name, namespace, environment, app_id, key, body, now),
        )

    async def get_object(self, kind: str, object_id: str) -> bytes | None:
        row = self._one("SELECT body FROM objects WHERE kind=? AND object_id=?", (kind, object_id))
        return bytes(row[0]) if row else None

    async def object_by_key(self, kind: str, key: str) -> tuple[str, bytes] | None:
        row = self._one("SELECT object_id, body FROM objects WHERE kind=? AND key=?", (kind, key))
        return (str(row[0]), bytes(row[1])) if row else None

    # calls and inputs
    async def create_call(self, call: CallRecord) -> None:
        self._write(
            f"INSERT INTO calls({CALL_COLS}) VALUES (?,?,?,?,?,?,?,?,?)",
            (
                call.call_id,
                call.function_id,
                call.call_type,
                call.invocation_type,
                int(call.return_exceptions),
                call.num_inputs,
                int(call.inputs_finished),
                call.created_at,
                call.parent_input_id,
            ),
        )

    async def get_call(self, call_id: str) -> CallRecord | None:
        row = self._one(f"SELECT {CALL_COLS} FROM calls WHERE call_id=?", (call_id,))
        return call_record(row) if row else None

    async def finish_call_inputs(self, call_id: str, num_inputs: int | None = None) -> None:
        if num_inputs is None:
            self._write("UPDATE calls SET inputs_finished=1 WHERE call_id=?", (call_id,))
        else:
            self._write("UPDATE calls SET inputs_finished=1, num_inputs=? WHERE call_id=?", (num_inputs, call_id))

    async def add_inputs(
        self, call_id: str, function_id: str, items: Iterable[tuple[str, int, str, bytes]], now: float
    ) -> None:
        rows = [(iid, call_id, function_id, idx, method, payload, "queued", now) for iid, idx, method, payload in items]
        with self._tx():
            self._db.executemany(
                "INSERT INTO inputs(input_id, call_id, function_id, idx, method_name, payload, state, created_at) "
                "VALUES (?,?,?,?,?,?,?,?)",
                rows,
            )
            self._db.execute("UPDATE calls SET num_inputs = num_inputs + ? WHERE call_id=?", (len(rows), call_id))

    async def claim_inputs(
        self, function_id: str, holder: str, limit: int, now: float, timeout_s: float | None
    ) -> list[InputLease]:
        """Atomically lease up to `limit` queued inputs, all for the same method (as @batched requires)."""
        first = self._one(CLAIM_HEAD_SQL, (function_id, now))
        if first is None:
            return []
        deadline = now + timeout_s if timeout_s else None
        rows = self._all(CLAIM_SQL, (holder, deadline, now, function_id, now, first[0], limit))
        rows.sort(key=lambda r: r[6])
        call_types = self._call_invocation_types({r[1] for r in rows})
        return [
            InputLease(r[0], r[1], r[2], r[3], bytes(r[4]), call_types.get(r[1], 0), r[5], holder, deadline)
            for r in rows
        ]

    def _call_invocation_types(self, call_ids: set[str]) -> dict[str, int]:
        missing = [c for c in call_ids if c not in self._invocation_types]
        if missing:
            marks = ",".join("?" * len(missing))
            rows = self._all(f"SELECT call_id, invocation_type FROM calls WHERE call_id IN ({marks})", missing)
            if len(self._invocation_types) > 10_000:
                self._invocation_types.clear()
            self._invocation_types.update({r[0]: r[1] for r in rows})
        return {c: self._invocation_types.get(c, 0) for c in call_ids}

    async def restart_leases(self, holder: str, input_ids: Sequence[str], now: float, deadline: float | None) -> None:
        if input_ids:
            marks = ",".join("?" * len(input_ids))
            self._write(RESTART_LEASES_SQL.format(marks=marks), (deadline, now, *input_ids, holder))

    async def get_input(self, input_id: str) -> InputState | None:
        row = self._one(f"SELECT {_INPUT_COLS} FROM inputs WHERE input_id=?", (input_id,))
        return _input_state(row) if row else None

    async def inputs_held_by(self, holder: str) -> list[InputState]:
        rows = self._all(f"SELECT {_INPUT_COLS} FROM inputs {LEASED_BY} WHERE holder=? AND state='leased'", (holder,))
        return [_input_state(r) for r in rows]

    async def request_cancel(self, input_id: str, holder: str, terminate: bool) -> bool:
        return (
            self._write(
                "UPDATE inputs SET cancel_for=?, cancel_kind=? WHERE input_id=? AND state='leased' AND holder=?",
                (holder, 2 if terminate else 1, input_id, holder),
            )
            == 1
        )

    async def take_cancels(self, holder: str) -> list[tuple[str, bool]]:
        where = "WHERE holder=? AND cancel_for=? AND state='leased'"
        with self._tx():
            rows = self._all(f"SELECT input_id, cancel_kind FROM inputs {LEASED_BY} {where}", (holder, holder))
            self._write(f"UPDATE inputs SET cancel_for=NULL {where}", (holder, holder))
        return [(r[0], r[1] == 2) for r in rows]

    async def requeue_input(self, input_id: str, attempt: int, not_before: float, holder: str | None = None) -> bool:
        sql = "UPDATE inputs SET state='queued', holder=NULL, deadline=NULL, attempt=?, not_before=? WHERE input_id=?"
        if holder is None:
            return self._write(sql + " AND state!='done'", (attempt, not_before, input_id)) == 1
        return self._write(sql + " AND state='leased' AND holder=?", (attempt, not_before, input_id, holder)) == 1

    async def finish_input(
        self, input_id: str, holder: str | None, result: bytes, data_format: int, now: float, status: int = 0
    ) -> OutputRecord | None:
        """Mark an input done and append its output, in one transaction. With a holder given, only
        the container that holds the lease may finish it; a stale or foreign output is dropped."""
        if holder is None:
            cond, args = "state!='done'", (now, status, input_id)
        else:
            cond, args = "state='leased' AND holder=?", (now, status, input_id, holder)  # type: ignore[assignment]
        with self._tx():
            row = self._one(
                f"UPDATE inputs SET state='done', deadline=NULL, finished_at=?, status=? WHERE input_id=? AND {cond} "
                "RETURNING call_id, idx",
                args,
            )
            if row is None:
                return None
            cur = self._db.execute(
                "INSERT INTO outputs(call_id, input_id, idx, result, data_format, created_at) VALUES (?,?,?,?,?,?)",
                (row[0], input_id, row[1], result, data_format, now),
            )
        return OutputRecord(int(cur.lastrowid or 0), row[0], input_id, row[1], result, data_format, 0)

    async def finish_held_inputs(
        self, holder: str, outputs: Sequence[tuple[str, bytes, int, int]], now: float
    ) -> list[tuple[OutputRecord, float] | None]:
        done: list[tuple[OutputRecord, float] | None] = []
        with self._tx():
            for input_id, result, data_format, status in outputs:
                row = self._one(
                    "UPDATE inputs SET state='done', deadline=NULL, finished_at=?, status=? "
                    "WHERE input_id=? AND state='leased' AND holder=? RETURNING call_id, idx, created_at",
                    (now, status, input_id, holder),
                )
                if row is None:
                    done.append(None)
                    continue
                cur = self._db.execute(
                    "INSERT INTO outputs(call_id, input_id, idx, result, data_format, created_at) VALUES (?,?,?,?,?,?)",
                    (row[0], input_id, row[1], result, data_format, now),
                )
                out = OutputRecord(int(cur.lastrowid or 0), row[0], input_id, row[1], result, data_format, 0)
                done.append((out, float(row[2])))
        return done

    async def queued_counts(self, now: float) -> dict[str, int]:
        rows = self._all(
            "SELECT function_id, count(*) FROM inputs WHERE state='queued' AND not_before<=? GROUP BY function_id",
            (now,),
        )
        return {r[0]: r[1] for r in rows}

    async def has_future_inputs(self, now: float) -> float | None:
        row = self._one("SELECT min(not_before) FROM inputs WHERE state='queued' AND not_before>?", (now,))
        return float(row[0]) if row and row[0] is not None else None

    async def expired_leases(self, now: float) -> list[InputState]:
        rows = self._all(
            f"SELECT {_INPUT_COLS} FROM inputs WHERE state='leased' AND deadline IS NOT NULL AND deadline<?", (now,)
        )
        return [_input_state(r) for r in rows]

    async def open_inputs_of_call(self, call_id: str) -> list[InputState]:
        rows = self._all(f"SELECT {_INPUT_COLS} FROM inputs WHERE call_id=? AND state!='done'", (call_id,))
        return [_input_state(r) for r in rows]

    async def queued_inputs_of_function(self, function_id: str) -> list[InputState]:
        rows = self._all(f"SELECT {_INPUT_COLS} FROM inputs WHERE function_id=? AND state='queued'", (function_id,))
        return [_input_state(r) for r in rows]

    async def unfinished_count(self, call_id: str) -> int:
        row = self._one("SELECT count(*) FROM inputs WHERE call_id=? AND state!='done'", (call_id,))
        return int(row[0])

    # outputs
    async def outputs_after(
        self, call_id: str, cursor: int, limit: int, idx_range: tuple[int, int] | None = None
    ) -> list[OutputRecord]:
        low, high = idx_range if idx_range is not None else (-1, 2**31 - 1)
        rows = self._all(
            OUTPUTS_IN_SPAN_SQL if idx_range is not None else OUTPUTS_AFTER_SQL, (call_id, cursor, low, high, limit)
        )
        return [OutputRecord(r[0], r[1], r[2], r[3], bytes(r[4]), r[5], r[6]) for r in rows]

    async def delete_outputs(self, seqs: Sequence[int]) -> None:
        if seqs:
            self._write(f"DELETE FROM outputs WHERE seq IN ({','.join('?' * len(seqs))})", list(seqs))

    # data channels (generators, web endpoints)
    async def put_chunks(self, call_id: str, direction: str, chunks: Iterable[tuple[int, bytes]]) -> None:
        self._db.executemany(
            "INSERT OR IGNORE INTO data_chunks VALUES (?,?,?,?)",
            [(call_id, direction, idx, data) for idx, data in chunks],
        )

    async def drop_call_data(self, call_id: str) -> None:
        """Data channels of a finished web call: bodies of any size must not pile up."""
        self._write("DELETE FROM data_chunks WHERE call_id=?", (call_id,))

    async def chunks_after(self, call_id: str, direction: str, last_index: int) -> list[tuple[int, bytes]]:
        rows = self._all(
            "SELECT idx, chunk FROM data_chunks WHERE call_id=? AND direction=? AND idx>? ORDER BY idx",
            (call_id, direction, last_index),
        )
        return [(r[0], bytes(r[1])) for r in rows]

    # recovery and retention
    async def release_all_leases(self) -> int:
        """At start-up no container of a previous process is alive: put their inputs back."""
        return self._write("UPDATE inputs SET state='queued', holder=NULL, deadline=NULL WHERE state='leased'")

    async def end_stale_tasks(self, now: float) -> None:
        self._write("UPDATE tasks SET state='stopped', ended_at=? WHERE ended_at IS NULL", (now,))

    async def open_tasks(self, function_id: str) -> int:
        row = self._one("SELECT count(*) FROM tasks WHERE function_id=? AND ended_at IS NULL", (function_id,))
        return int(row[0]) if row else 0

    async def prune(self, before: float) -> int:
        """Forget finished calls (inputs, outputs, data), ended tasks and logs older than `before`."""
        with self._tx():
            old = [
                r[0]
                for r in self._all(
                    "SELECT call_id FROM calls c WHERE created_at<? AND NOT EXISTS "
                    "(SELECT 1 FROM inputs i WHERE i.call_id=c.call_id AND i.state!='done')",
                    (before,),
                )
            ]
            for table in ("inputs", "outputs", "data_chunks", "calls"):
                self._db.executemany(f"DELETE FROM {table} WHERE call_id=?", [(c,) for c in old])
            self._write("DELETE FROM tasks WHERE ended_at IS NOT NULL AND ended_at<?", (before,))
            self._write("DELETE FROM logs WHERE created_at<?", (before,))
        return len(old)

    async def delete_app(self, app_id: str) -> None:
        with self._tx():
            self._write("DELETE FROM functions WHERE app_id=?", (app_id,))
            self._write("DELETE FROM classes WHERE app_id=?", (app_id,))
            self._write("DELETE FROM objects WHERE kind='layout' AND object_id=?", (app_id,))
            self._write("DELETE FROM apps WHERE app_id=?", (app_id,))

    # tasks
    async def put_task(self, task: TaskRecord) -> None:
        self._write(
            f"INSERT OR REPLACE INTO tasks({TASK_COLS}) VALUES (?,?,?,?,?,?,?,?)",
            (
                task.task_id,
                task.function_id,
                task.app_id,
                task.state,
                task.secret_hash,
                task.created_at,
                task.ended_at,
                task.replica_id,
            ),
        )

    async def end_task(self, task_id: str, state: str, now: float, result: bytes | None, exit_reason: str = "") -> None:
        self._write(
            "UPDATE tasks SET state=?, ended_at=?, result=coalesce(?, result), exit_reason=? WHERE task_id=?",
            (state, now, result, exit_reason, task_id),
        )

    async def set_task_result(self, task_id: str, result: bytes) -> None:
        self._write("UPDATE tasks SET result=? WHERE task_id=?", (result, task_id))

    async def get_task(self, task_id: str) -> TaskRecord | None:
        row = self._one(
            f"SELECT {TASK_COLS} FROM tasks WHERE task_id=?",
            (task_id,),
        )
        return TaskRecord(*row) if row else None
