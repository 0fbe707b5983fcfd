"""PostgreSQL GovernanceStore: metered usage per task and minute (added to with an upsert, so replicas and
workers may report parts of one minute), billing rates, app tags, the audit log and quotas."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

from berth.store.governance_codec import audit_entry, usage_row, usage_values
from berth.store.governance_records import AuditEntry, Quota, UsageRow
from berth.store.postgres.db import Conn, Database

_USAGE_COLS = (
    "task_id, bucket, object_id, app_id, function_id, environment, description, tags, gpu_type, "
    "cpu_s, memory_gib_s, gpu_s"
)
_AUDIT_COLS = "entry_id, at, actor, action, target_type, target_id, environment, status, details, seq"


class PostgresGovernanceStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add_usage(self, rows: Sequence[UsageRow]) -> None:
        values = [usage_values(u) for u in rows]

        async def insert(conn: Conn) -> None:
            await conn.executemany(
                f"INSERT INTO usage_minutes({_USAGE_COLS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12) "
                "ON CONFLICT (task_id, bucket) DO UPDATE SET cpu_s=usage_minutes.cpu_s+EXCLUDED.cpu_s, "
                "memory_gib_s=usage_minutes.memory_gib_s+EXCLUDED.memory_gib_s, "
                "gpu_s=usage_minutes.gpu_s+EXCLUDED.gpu_s, tags=EXCLUDED.tags, "
                "description=EXCLUDED.description, gpu_type=EXCLUDED.gpu_type",
                values,
            )

        await self._db.transaction(insert)

    async def usage_between(self, start: float, end: float) -> list[UsageRow]:
        rows = await self._db.fetch(
            f"SELECT {_USAGE_COLS} FROM usage_minutes WHERE bucket>=$1 AND bucket<$2 ORDER BY bucket, task_id",
            math.ceil(start),
            math.ceil(end),
        )
        return [usage_row(r) for r in rows]

    async def set_rates(self, rates: dict[str, str]) -> None:
        for resource, rate in rates.items():
            if rate:
                await self._db.execute(
                    "INSERT INTO billing_rates VALUES ($1,$2) ON CONFLICT (resource) DO UPDATE SET rate=EXCLUDED.rate",
                    resource,
                    rate,
                )
            else:
                await self._db.execute("DELETE FROM billing_rates WHERE resource=$1", resource)

    async def rates(self) -> dict[str, str]:
        return {str(r[0]): str(r[1]) for r in await self._db.fetch("SELECT resource, rate FROM billing_rates")}

    async def set_app_tags(self, app_id: str, tags: dict[str, str]) -> None:
        await self._db.execute(
            "INSERT INTO app_tags VALUES ($1,$2) ON CONFLICT (app_id) DO UPDATE SET tags=EXCLUDED.tags",
            app_id,
            json.dumps(tags, sort_keys=True),
        )

    async def app_tags(self, app_id: str) -> dict[str, str]:
        raw = await self._db.fetchval("SELECT tags FROM app_tags WHERE app_id=$1", app_id)
        return dict(json.loads(raw)) if raw else {}

    async def append_audit(self, entry: AuditEntry) -> None:
        await self._db.execute(
            "INSERT INTO audit_log(entry_id, at, actor, action, target_type, target_id, environment, status, "
            "details) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9) ON CONFLICT (entry_id) DO NOTHING",
            entry.entry_id,
            entry.at,
            entry.actor,
            entry.action,
            entry.target_type,
            entry.target_id,
            entry.environment,
            entry.status,
            json.dumps(entry.details, sort_keys=True),
        )

    async def audit_entries(self, since: float, until: float, limit: int, before_seq: int = 0) -> list[AuditEntry]:
        rows = await self._db.fetch(
            f"SELECT {_AUDIT_COLS} FROM audit_log WHERE at>=$1 AND at<$2 AND ($3=0 OR seq<$3) "
            "ORDER BY seq DESC LIMIT $4",
            since,
            until,
            before_seq,
            limit,
        )
        return [audit_entry(r) for r in rows]

    async def count_audit(self, since: float, until: float) -> int:
        return int(await self._db.fetchval("SELECT COUNT(*) FROM audit_log WHERE at>=$1 AND at<$2", since, until))

    async def set_quota(self, quota: Quota) -> None:
        if quota.limit < 0:
            await self._db.execute("DELETE FROM quotas WHERE scope=$1 AND resource=$2", quota.scope, quota.resource)
        else:
            await self._db.execute(
                "INSERT INTO quotas VALUES ($1,$2,$3) ON CONFLICT (scope, resource) DO UPDATE SET quota=EXCLUDED.quota",
                quota.scope,
                quota.resource,
                quota.limit,
            )

    async def quotas(self) -> list[Quota]:
        rows = await self._db.fetch("SELECT scope, resource, quota FROM quotas ORDER BY scope, resource")
        return [Quota(str(r[0]), str(r[1]), int(r[2])) for r in rows]
