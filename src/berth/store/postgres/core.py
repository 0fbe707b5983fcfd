"""PostgreSQL CoreStore: tokens, apps, functions and classes, generic objects and tasks, plus the call
path from store/postgres/calls.py. SQLite's INSERT OR REPLACE becomes an upsert that also removes a row
that held the same value of another unique column, as SQLite's REPLACE does."""

from __future__ import annotations

from collections.abc import Sequence

from modal_proto import api_pb2

from berth.store.postgres.calls import CallTables
from berth.store.postgres.db import Conn, Database, lock_value
from berth.store.records import APP_COLS as _APP_COLS
from berth.store.records import TASK_COLS as _TASK_COLS
from berth.store.records import TOKEN_COLS, AppRecord, FunctionRecord, ReplicaRecord, TaskRecord, TokenRecord

_FN_COLS = "function_id, app_id, tag, definition, bound_from, serialized_params, options"


class PostgresCoreStore(CallTables):
    def __init__(self, db: Database) -> None:
        super().__init__(db)

    @property
    def database(self) -> Database:
        """The shared pool, for the other PostgreSQL stores of this package."""
        return self._db

    async def close(self) -> None:
        await self._db.close()

    # tokens
    async def add_token(self, token_id: str, secret_hash: str, environment: str | None, now: float) -> None:
        await self._db.write(
            "INSERT INTO tokens(token_id, secret_hash, environment, created_at) VALUES ($1, $2, $3, $4)",
            token_id,
            secret_hash,
            environment,
            now,
        )

    async def add_service_user(
        self, token_id: str, secret_hash: str, name: str, now: float, expires_at: float | None
    ) -> bool:
        rows = await self._db.write(
            "INSERT INTO tokens(token_id, secret_hash, created_at, name, expires_at) VALUES ($1, $2, $3, $4, $5) "
            "ON CONFLICT DO NOTHING RETURNING 1",
            token_id,
            secret_hash,
            now,
            name,
            expires_at,
        )
        return len(rows) == 1

    async def token(self, token_id: str, now: float) -> tuple[str, str] | None:
        row = await self._db.fetchrow(
            "SELECT secret_hash, coalesce(environment, '') FROM tokens WHERE token_id=$1 AND revoked_at IS NULL "
            "AND disabled_at IS NULL AND (expires_at IS NULL OR expires_at > $2)",
            token_id,
            now,
        )
        return (str(row[0]), str(row[1])) if row else None

    async def token_records(self) -> list[TokenRecord]:
        rows = await self._db.fetch(f"SELECT {TOKEN_COLS} FROM tokens ORDER BY created_at")
        return [TokenRecord(*r) for r in rows]

    async def set_token_disabled(self, token_id: str, disabled_at: float | None) -> bool:
        rows = await self._db.write(
            "UPDATE tokens SET disabled_at=$1 WHERE token_id=$2 AND revoked_at IS NULL RETURNING 1",
            disabled_at,
            token_id,
        )
        return len(rows) == 1

    async def tokens(self) -> list[tuple[str, str, float, float | None]]:
        rows = await self._db.fetch(
            "SELECT token_id, coalesce(environment, ''), created_at, revoked_at FROM tokens ORDER BY created_at"
        )
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    async def revoke_token(self, token_id: str, now: float) -> bool:
        rows = await self._db.write(
            "UPDATE tokens SET revoked_at=$1 WHERE token_id=$2 AND revoked_at IS NULL RETURNING 1", now, token_id
        )
        return len(rows) == 1

    # dashboard sign-ins
    async def add_dashboard_grant(self, digest: str, kind: str, token_id: str, expires_at: float) -> None:
        await self._db.write(
            "INSERT INTO dashboard_grants(digest, kind, token_id, expires_at) VALUES ($1, $2, $3, $4)",
            digest,
            kind,
            token_id,
            expires_at,
        )

    async def redeem_dashboard_link(self, digest: str, now: float) -> str | None:
        rows = await self._db.write(
            "UPDATE dashboard_grants SET used_at=$1 WHERE digest=$2 AND kind='link' AND used_at IS NULL "
            "AND expires_at>$1 RETURNING token_id",
            now,
            digest,
        )
        return str(rows[0][0]) if rows else None

    async def dashboard_session(self, digest: str, now: float) -> str | None:
        token_id = await self._db.fetchval(
            "SELECT token_id FROM dashboard_grants WHERE digest=$1 AND kind='session' AND expires_at>$2", digest, now
        )
        return str(token_id) if token_id is not None else None

    async def end_dashboard_session(self, digest: str) -> None:
        await self._db.execute("DELETE FROM dashboard_grants WHERE digest=$1 AND kind='session'", digest)

    # apps
    async def put_app(self, app: AppRecord) -> None:
        await self._db.execute(
            f"INSERT INTO apps({_APP_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (app_id) DO UPDATE SET "
            "name=EXCLUDED.name, description=EXCLUDED.description, state=EXCLUDED.state, "
            "environment=EXCLUDED.environment, created_at=EXCLUDED.created_at, stopped_at=EXCLUDED.stopped_at",
            app.app_id,
            app.name,
            app.description,
            app.state,
            app.environment,
            app.created_at,
            app.stopped_at,
        )

    async def get_app(self, app_id: str) -> AppRecord | None:
        row = await self._db.fetchrow(f"SELECT {_APP_COLS} FROM apps WHERE app_id=$1", app_id)
        return AppRecord(*row) if row else None

    async def set_app_state(self, app_id: str, state: int, stopped_at: float | None = None) -> None:
        await self._db.execute("UPDATE apps SET state=$1, stopped_at=$2 WHERE app_id=$3", state, stopped_at, app_id)

    async def delete_app(self, app_id: str) -> None:
        async def body(conn: Conn) -> None:
            await conn.execute("DELETE FROM functions WHERE app_id=$1", app_id)
            await conn.execute("DELETE FROM classes WHERE app_id=$1", app_id)
            await conn.execute("DELETE FROM objects WHERE kind='layout' AND object_id=$1", app_id)
            await conn.execute("DELETE FROM apps WHERE app_id=$1", app_id)

        await self._db.transaction(body, idempotent=True)

    _LIVE_APP_STATES = [api_pb2.APP_STATE_EPHEMERAL, api_pb2.APP_STATE_INITIALIZING]

    async def app_heartbeat(self, app_id: str, now: float) -> None:
        await self._db.execute("UPDATE apps SET heartbeat_at=$1 WHERE app_id=$2", now, app_id)

    async def silent_apps(self, before: float) -> list[str]:
        rows = await self._db.fetch(
            "SELECT app_id FROM apps WHERE state = ANY($1::int[]) AND coalesce(heartbeat_at, created_at)<$2",
            self._LIVE_APP_STATES,
            before,
        )
        return [r[0] for r in rows]

    async def touch_live_apps(self, now: float) -> None:
        await self._db.execute(
            "UPDATE apps SET heartbeat_at=$1 WHERE state = ANY($2::int[])", now, self._LIVE_APP_STATES
        )

    # sandboxes, across replicas
    async def add_sandbox(self, sandbox_id: str, app_id: str, name: str, now: float) -> str | None:
        async def body(conn: Conn) -> str | None:
            added = await conn.fetchval(
                "INSERT INTO sandboxes(sandbox_id, app_id, name, created_at) VALUES ($1, $2, $3, $4) "
                "ON CONFLICT DO NOTHING RETURNING sandbox_id",
                sandbox_id,
                app_id,
                name,
                now,
            )
            if added is not None:
                return None
            holder = await conn.fetchval(
                "SELECT sandbox_id FROM sandboxes WHERE app_id=$1 AND name=$2 AND name!='' AND ended_at IS NULL",
                app_id,
                name,
            )
            return str(holder) if holder is not None else sandbox_id

        return await self._db.transaction(body)

    # environment roles
    async def set_environment_role(self, environment: str, token_id: str, role: str | None) -> None:
        if role is None:
            await self._db.execute(
                "DELETE FROM environment_roles WHERE environment=$1 AND token_id=$2", environment, token_id
            )
        else:
            await self._db.execute(
                "INSERT INTO environment_roles(environment, token_id, role) VALUES ($1, $2, $3) "
                "ON CONFLICT (environment, token_id) DO UPDATE SET role=excluded.role",
                environment,
                token_id,
                role,
            )

    async def environment_roles(self) -> list[tuple[str, str, str]]:
        rows = await self._db.fetch(
            "SELECT environment, token_id, role FROM environment_roles ORDER BY environment, token_id"
        )
        return [(r[0], r[1], r[2]) for r in rows]

    # autoscaler overrides
    async def put_autoscaler_override(self, function_id: str, configuration: bytes, now: float) -> None:
        await self._db.execute(
            "INSERT INTO autoscaler_overrides(function_id, configuration, updated_at) VALUES ($1, $2, $3) "
            "ON CONFLICT (function_id) DO UPDATE SET configuration=excluded.configuration, "
            "updated_at=excluded.updated_at",
            function_id,
            configuration,
            now,
        )

    async def autoscaler_overrides(self) -> dict[str, bytes]:
        rows = await self._db.fetch("SELECT function_id, configuration FROM autoscaler_overrides")
        return {r[0]: bytes(r[1]) for r in rows}

    async def delete_autoscaler_override(self, function_id: str) -> None:
        await self._db.execute("DELETE FROM autoscaler_overrides WHERE function_id=$1", function_id)

    async def end_sandbox(self, sandbox_id: str, now: float) -> None:
        await self._db.execute(
            "UPDATE sandboxes SET ended_at=$1 WHERE sandbox_id=$2 AND ended_at IS NULL", now, sandbox_id
        )

    async def running_sandboxes(self, app_id: str) -> list[str]:
        rows = await self._db.fetch(
            "SELECT sandbox_id FROM sandboxes WHERE ended_at IS NULL AND ($1 = '' OR app_id = $1) "
            "ORDER BY created_at DESC",
            app_id,
        )
        return [r[0] for r in rows]

    async def running_sandbox_named(self, app_id: str, name: str) -> str | None:
        found = await self._db.fetchval(
            "SELECT sandbox_id FROM sandboxes WHERE app_id=$1 AND name=$2 AND ended_at IS NULL", app_id, name
        )
        return str(found) if found is not None else None

    async def request_sandbox_stop(self, sandbox_id: str, now: float) -> bool:
        changed = await self._db.execute(
            "UPDATE sandboxes SET stop_requested_at=coalesce(stop_requested_at, $1) "
            "WHERE sandbox_id=$2 AND ended_at IS NULL",
            now,
            sandbox_id,
        )
        return changed == 1

    async def sandbox_stops_requested(self, sandbox_ids: Sequence[str]) -> list[str]:
        if not sandbox_ids:
            return []
        rows = await self._db.fetch(
            "SELECT sandbox_id FROM sandboxes WHERE sandbox_id = ANY($1::text[]) AND ended_at IS NULL "
            "AND stop_requested_at IS NOT NULL",
            list(sandbox_ids),
        )
        return [r[0] for r in rows]

    # server replicas
    async def join_replica(self, replica: ReplicaRecord) -> None:
        async def body(conn: Conn) -> None:
            await conn.execute("DELETE FROM replicas WHERE name=$1", replica.name)
            await conn.execute(
                "INSERT INTO replicas(replica_id, name, started_at, seen_at, info) VALUES ($1, $2, $3, $4, $5)",
                replica.replica_id,
                replica.name,
                replica.started_at,
                replica.seen_at,
                replica.info,
            )

        await self._db.transaction(body, idempotent=True)

    async def replica_beat(self, replica_id: str, now: float, info: bytes) -> bool:
        touched = await self._db.execute(
            "UPDATE replicas SET seen_at=$1, info=$2 WHERE replica_id=$3", now, info, replica_id
        )
        return touched == 1

    async def leave_replica(self, replica_id: str) -> None:
        await self._db.execute("DELETE FROM replicas WHERE replica_id=$1", replica_id)

    async def live_replicas(self, seen_after: float) -> list[ReplicaRecord]:
        rows = await self._db.fetch(
            "SELECT replica_id, name, started_at, seen_at, info FROM replicas WHERE seen_at>$1 ORDER BY name",
            seen_after,
        )
        return [ReplicaRecord(r[0], r[1], r[2], r[3], bytes(r[4])) for r in rows]

    async def release_orphans(self, seen_after: float, now: float) -> list[str]:
        async def body(conn: Conn) -> list[str]:
            await conn.execute("DELETE FROM replicas WHERE seen_at<=$1", seen_after)
            # Lock the orphaned tasks' rows first, so a replica that joins meanwhile cannot be counted twice.
            ended = await conn.fetch(
                "UPDATE tasks SET state='lost', ended_at=$1 WHERE ended_at IS NULL AND replica_id NOT IN "
                "(SELECT replica_id FROM replicas) RETURNING task_id",
                now,
            )
            holders = [r[0] for r in ended]
            rows = await conn.fetch(
                "UPDATE inputs SET state='queued', holder=NULL, deadline=NULL "
                "WHERE state='leased' AND holder = ANY($1::text[]) RETURNING function_id",
                holders,
            )
            return sorted({r[0] for r in rows})

        return await self._db.transaction(body, idempotent=True)

    # functions and classes
    async def put_function(self, fn: FunctionRecord) -> None:
        await self._db.execute(
            f"INSERT INTO functions({_FN_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7) "
            "ON CONFLICT (function_id) DO UPDATE SET app_id=EXCLUDED.app_id, tag=EXCLUDED.tag, "
            "definition=EXCLUDED.definition, bound_from=EXCLUDED.bound_from, "
            "serialized_params=EXCLUDED.serialized_params, options=EXCLUDED.options",
            fn.function_id,
            fn.app_id,
            fn.tag,
            fn.definition,
            fn.bound_from,
            fn.serialized_params,
            fn.options,
        )

    async def get_function(self, function_id: str) -> FunctionRecord | None:
        row = await self._db.fetchrow(f"SELECT {_FN_COLS} FROM functions WHERE function_id=$1", function_id)
        return FunctionRecord(*row) if row else None

    async def find_bound_function(self, parent_id: str, params: bytes, options: bytes) -> str | None:
        row = await self._db.fetchrow(
            "SELECT function_id FROM functions WHERE bound_from=$1 AND serialized_params=$2 AND options=$3 LIMIT 1",
            parent_id,
            params,
            options,
        )
        return str(row[0]) if row else None

    async def bound_functions(self, parent_id: str) -> list[FunctionRecord]:
        rows = await self._db.fetch(
            f"SELECT {_FN_COLS} FROM functions WHERE bound_from=$1 ORDER BY function_id DESC", parent_id
        )
        return [FunctionRecord(*r) for r in rows]

    async def put_class(self, class_id: str, app_id: str, tag: str, metadata: bytes) -> None:
        await self._db.execute(
            "INSERT INTO classes(class_id, app_id, tag, metadata) VALUES ($1, $2, $3, $4) ON CONFLICT (class_id) "
            "DO UPDATE SET app_id=EXCLUDED.app_id, tag=EXCLUDED.tag, metadata=EXCLUDED.metadata",
            class_id,
            app_id,
            tag,
            metadata,
        )

    async def get_class(self, class_id: str) -> tuple[str, bytes] | None:
        row = await self._db.fetchrow("SELECT app_id, metadata FROM classes WHERE class_id=$1", class_id)
        return (str(row[0]), bytes(row[1])) if row else None

    # generic objects (mounts, images, layouts)
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
        async def upsert(conn: Conn) -> None:
            if key is not None:  # the content key is unique per kind: an older object under it is replaced
                await lock_value(conn, "objects.key", kind, key)
                await conn.execute(
                    "DELETE FROM objects WHERE kind=$1 AND key=$2 AND object_id<>$3", kind, key, object_id
                )
            await conn.execute(
                "INSERT INTO objects(object_id, kind, name, namespace, environment, app_id, key, body, created_at) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (object_id) DO UPDATE SET "
                "kind=EXCLUDED.kind, name=EXCLUDED.name, namespace=EXCLUDED.namespace, "
                "environment=EXCLUDED.environment, app_id=EXCLUDED.app_id, key=EXCLUDED.key, body=EXCLUDED.body, "
                "created_at=EXCLUDED.created_at",
                object_id,
                kind,
                name,
                namespace,
                environment,
                app_id,
                key,
                body,
                now,
            )

        await self._db.transaction(upsert, idempotent=True)

    async def get_object(self, kind: str, object_id: str) -> bytes | None:
        row = await self._db.fetchrow("SELECT body FROM objects WHERE kind=$1 AND object_id=$2", kind, object_id)
        return bytes(row[0]) if row else None

    async def object_by_key(self, kind: str, key: str) -> tuple[str, bytes] | None:
        row = await self._db.fetchrow("SELECT object_id, body FROM objects WHERE kind=$1 AND key=$2", kind, key)
        return (str(row[0]), bytes(row[1])) if row else None

    # tasks
    async def put_task(self, task: TaskRecord) -> None:
        # REPLACE semantics: a re-put task starts without a result, as in SQLite.
        await self._db.execute(
            f"INSERT INTO tasks({_TASK_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (task_id) DO UPDATE "
            "SET function_id=EXCLUDED.function_id, app_id=EXCLUDED.app_id, state=EXCLUDED.state, "
            "secret_hash=EXCLUDED.secret_hash, created_at=EXCLUDED.created_at, ended_at=EXCLUDED.ended_at, "
            "replica_id=EXCLUDED.replica_id, result=NULL",
            task.task_id,
            task.function_id,
            task.app_id,
            task.state,
            task.secret_hash,
            task.created_at,
            task.ended_at,
            task.replica_id,
        )

    async def end_task(self, task_id: str, state: str, now: float, result: bytes | None, exit_reason: str = "") -> None:
        await self._db.execute(
            "UPDATE tasks SET state=$1, ended_at=$2, result=coalesce($3, result), exit_reason=$4 WHERE task_id=$5",
            state,
            now,
            result,
            exit_reason,
            task_id,
        )

    async def set_task_result(self, task_id: str, result: bytes) -> None:
        await self._db.execute("UPDATE tasks SET result=$1 WHERE task_id=$2", result, task_id)

    async def get_task(self, task_id: str) -> TaskRecord | None:
        row = await self._db.fetchrow(f"SELECT {_TASK_COLS} FROM tasks WHERE task_id=$1", task_id)
        return TaskRecord(*row) if row else None

    async def open_tasks(self, function_id: str) -> int:
        count = await self._db.fetchval(
            "SELECT count(*) FROM tasks WHERE function_id=$1 AND ended_at IS NULL", function_id
        )
        return int(count or 0)

    async def end_stale_tasks(self, now: float) -> None:
        await self._db.execute("UPDATE tasks SET state='stopped', ended_at=$1 WHERE ended_at IS NULL", now)
