"""SQLite GovernanceStore: metered usage per task and minute, billing rates, app tags, the audit log and
quotas. Shares the main store's connection (one file, one writer); every statement commits on return."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from berth.store.governance_codec import audit_entry, usage_row, usage_values
from berth.store.governance_records import AuditEntry, Quota, UsageRow

_USAGE_COLS = (
    "task_id, bucket, object_id, app_id, function_id, environment, description, tags, gpu_type, "
    "cpu_s, memory_gib_s, gpu_s"
)
_AUDIT_COLS = "entry_id, at, actor, action, target_type, target_id, environment, status, details, seq"


class SqliteGovernanceStore:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    async def add_usage(self, rows: Sequence[UsageRow]) -> None:
        self._db.executemany(
            f"INSERT INTO usage_minutes({_USAGE_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT(task_id, bucket) DO UPDATE SET cpu_s=cpu_s+excluded.cpu_s, "
            "memory_gib_s=memory_gib_s+excluded.memory_gib_s, gpu_s=gpu_s+excluded.gpu_s, "
            "tags=excluded.tags, description=excluded.description, gpu_type=excluded.gpu_type",
            [usage_values(u) for u in rows],
        )

    async def usage_between(self, start: float, end: float) -> list[UsageRow]:
        rows = self._db.execute(
            f"SELECT {_USAGE_COLS} FROM usage_minutes WHERE bucket>=? AND bucket<? ORDER BY bucket, task_id",
            (start, end),
        )
        return [usage_row(r) for r in rows.fetchall()]

    async def set_rates(self, rates: dict[str, str]) -> None:
        for resource, rate in rates.items():
            if rate:
                self._db.execute("INSERT OR REPLACE INTO billing_rates VALUES (?,?)", (resource, rate))
            else:
                self._db.execute("DELETE FROM billing_rates WHERE resource=?", (resource,))

    async def rates(self) -> dict[str, str]:
        return {str(r[0]): str(r[1]) for r in self._db.execute("SELECT resource, rate FROM billing_rates")}

    async def set_app_tags(self, app_id: str, tags: dict[str, str]) -> None:
        self._db.execute("INSERT OR REPLACE INTO app_tags VALUES (?,?)", (app_id, json.dumps(tags, sort_keys=True)))

    async def app_tags(self, app_id: str) -> dict[str, str]:
        row = self._db.execute("SELECT tags FROM app_tags WHERE app_id=?", (app_id,)).fetchone()
        return dict(json.loads(row[0])) if row else {}

    async def append_audit(self, entry: AuditEntry) -> None:
        self._db.execute(
            "INSERT INTO audit_log(entry_id, at, actor, action, target_type, target_id, environment, status, "
            "details) VALUES (?,?,?,?,?,?,?,?,?)",
            (
                entry.entry_id,
                entry.at,
                entry.actor,
                entry.action,
                entry.target_type,
                entry.target_id,
                entry.environment,
                entry.status,
                json.dumps(entry.details, sort_keys=True),
            ),
        )

    async def audit_entries(self, since: float, until: float, limit: int, before_seq: int = 0) -> list[AuditEntry]:
        rows = self._db.execute(
            f"SELECT {_AUDIT_COLS} FROM audit_log WHERE at>=? AND at<? AND (?=0 OR seq<?) ORDER BY seq DESC LIMIT ?",
            (since, until, before_seq, before_seq, limit),
        )
        return [audit_entry(r) for r in rows.fetchall()]

    async def count_audit(self, since: float, until: float) -> int:
        row = self._db.execute("SELECT COUNT(*) FROM audit_log WHERE at>=? AND at<?", (since, until)).fetchone()
        return int(row[0])

    async def set_quota(self, quota: Quota) -> None:
        if quota.limit < 0:
            self._db.execute("DELETE FROM quotas WHERE scope=? AND resource=?", (quota.scope, quota.resource))
        else:
            self._db.execute("INSERT OR REPLACE INTO quotas VALUES (?,?,?)", (quota.scope, quota.resource, quota.limit))

    async def quotas(self) -> list[Quota]:
        rows = self._db.execute("SELECT scope, resource, quota FROM quotas ORDER BY scope, resource")
        return [Quota(str(r[0]), str(r[1]), int(r[2])) for r in rows.fetchall()]
