"""Row conversions both SQL backends of the GovernanceStore share (tags and details are JSON text)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from berth.store.governance_records import AuditEntry, UsageRow


def usage_row(r: Sequence[Any]) -> UsageRow:
    return UsageRow(
        r[0], int(r[1]), r[2], r[3], r[4], r[5], r[6], json.loads(r[7]), r[8], float(r[9]), float(r[10]), float(r[11])
    )


def audit_entry(r: Sequence[Any]) -> AuditEntry:
    return AuditEntry(r[0], float(r[1]), r[2], r[3], r[4], r[5], r[6], r[7], json.loads(r[8]), int(r[9]))


def usage_values(u: UsageRow) -> tuple[Any, ...]:
    return (
        u.task_id,
        u.bucket,
        u.object_id,
        u.app_id,
        u.function_id,
        u.environment,
        u.description,
        json.dumps(u.tags, sort_keys=True),
        u.gpu_type,
        u.cpu_s,
        u.memory_gib_s,
        u.gpu_s,
    )
