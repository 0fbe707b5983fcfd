"""Deployments, environments, app lookups by name and persisted logs, on the shared SQLite connection."""

from __future__ import annotations

import sqlite3

from modal_proto import api_pb2

from berth.store.records import APP_COLS, ENVIRONMENT_TABLES, AppRecord, DeploymentRecord
from berth.store.sqlite.connection import transaction

_DEPLOYED = api_pb2.APP_STATE_DEPLOYED
_DEPLOY_COLS = (
    "app_id, version, deployed_at, tag, client_version, rollback_version, commit_info, snapshot, deployment_type"
)


class DeploymentStore:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    async def deployed_app(self, environment: str, name: str) -> AppRecord | None:
        row = self._db.execute(
            f"SELECT {APP_COLS} FROM apps WHERE environment=? AND name=? AND state=? ORDER BY created_at DESC LIMIT 1",
            (environment, name, _DEPLOYED),
        ).fetchone()
        return AppRecord(*row) if row else None

    async def last_app_named(self, environment: str, name: str) -> AppRecord | None:
        """The most recent app that carried this deployment name, deployed or stopped since."""
        row = self._db.execute(
            f"SELECT {APP_COLS} FROM apps WHERE environment=? AND name=? ORDER BY created_at DESC LIMIT 1",
            (environment, name),
        ).fetchone()
        return AppRecord(*row) if row else None

    async def list_apps(self, environment: str) -> list[AppRecord]:
        rows = self._db.execute(
            f"SELECT {APP_COLS} FROM apps WHERE environment=? AND state!=? ORDER BY created_at",
            (environment, api_pb2.APP_STATE_INITIALIZING),
        ).fetchall()
        return [AppRecord(*r) for r in rows]

    async def running_apps(self) -> list[AppRecord]:
        states = (api_pb2.APP_STATE_EPHEMERAL, api_pb2.APP_STATE_INITIALIZING, api_pb2.APP_STATE_DETACHED)
        rows = self._db.execute(
            f"SELECT {APP_COLS} FROM apps WHERE state IN ({','.join('?' * len(states))})", states
        ).fetchall()
        return [AppRecord(*r) for r in rows]

    async def add_deployment(self, rec: DeploymentRecord) -> None:
        self._db.execute(
            f"INSERT INTO deployments({_DEPLOY_COLS}) VALUES (?,?,?,?,?,?,?,?,?)",
            (
                rec.app_id,
                rec.version,
                rec.deployed_at,
                rec.tag,
                rec.client_version,
                rec.rollback_version,
                rec.commit_info,
                rec.snapshot,
                rec.deployment_type,
            ),
        )

    async def deployments(self, app_id: str) -> list[DeploymentRecord]:
        rows = self._db.execute(
            f"SELECT {_DEPLOY_COLS} FROM deployments WHERE app_id=? ORDER BY version", (app_id,)
        ).fetchall()
        return [DeploymentRecord(r[0], r[1], r[2], r[3], r[4], r[5], bytes(r[6]), bytes(r[7]), r[8]) for r in rows]

    # environments
    async def add_environment(self, name: str, now: float) -> bool:
        cur = self._db.execute("INSERT OR IGNORE INTO environments VALUES (?,?)", (name, now))
        return cur.rowcount == 1

    async def environments(self) -> list[tuple[str, float]]:
        return [(r[0], r[1]) for r in self._db.execute("SELECT name, created_at FROM environments ORDER BY name")]

    async def delete_environment(self, name: str) -> bool:
        return self._db.execute("DELETE FROM environments WHERE name=?", (name,)).rowcount == 1

    async def rename_environment(self, old: str, new: str) -> bool:
        with transaction(self._db):
            if self._db.execute("UPDATE environments SET name=? WHERE name=?", (new, old)).rowcount != 1:
                return False
            for table in ENVIRONMENT_TABLES:
                self._db.execute(f"UPDATE {table} SET environment=? WHERE environment=?", (new, old))
            self._db.execute("UPDATE quotas SET scope=? WHERE scope=?", (f"env:{new}", f"env:{old}"))
        return True

    # logs
    def add_log_now(self, app_id: str, now: float, batch: bytes) -> None:
        """Synchronous on purpose: called from the log pump, which must not reorder entries."""
        self._db.execute("INSERT INTO logs(app_id, created_at, batch) VALUES (?,?,?)", (app_id, now, batch))

    async def logs_between(self, app_id: str, since: float, until: float, limit: int) -> list[tuple[float, bytes]]:
        rows = self._db.execute(
            "SELECT created_at, batch FROM logs WHERE app_id=? AND created_at>=? AND created_at<? "
            "ORDER BY seq DESC LIMIT ?",
            (app_id, since, until, limit),
        ).fetchall()
        return [(r[0], bytes(r[1])) for r in reversed(rows)]

    async def log_times(self, app_id: str, since: float, until: float) -> list[float]:
        rows = self._db.execute(
            "SELECT created_at FROM logs WHERE app_id=? AND created_at>=? AND created_at<?", (app_id, since, until)
        ).fetchall()
        return [r[0] for r in rows]
