"""Plain records of governance: metered usage per task and minute, audit log entries and quotas."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class UsageRow:
    """What one task used in one minute bucket, with what it is attributed to. Adding a row for a (task,
    bucket) that exists adds its integrals; the attribution (tags, description) of the later row wins."""

    task_id: str
    bucket: int  # unix seconds, the start of the minute
    object_id: str  # the function (fu-…) or sandbox (sb-…) the cost is attributed to
    app_id: str
    function_id: str
    environment: str
    description: str  # the app's name and the function's tag, e.g. "my-app.f"
    tags: dict[str, str] = field(default_factory=dict)
    gpu_type: str = ""
    cpu_s: float = 0.0
    memory_gib_s: float = 0.0
    gpu_s: float = 0.0


@dataclass(frozen=True)
class AuditEntry:
    """One administrative action: who (a token id, or `local:<user>` for the berth CLI), what, on what, and
    whether it succeeded. `details` holds names and flags, never values (of secrets, tokens or anything else)."""

    entry_id: str
    at: float
    actor: str
    action: str  # e.g. "app.deploy", "secret.delete", "token.create", "quota.set"
    target_type: str
    target_id: str
    environment: str = ""
    status: str = "ok"
    details: dict[str, str] = field(default_factory=dict)
    seq: int = 0  # assigned by the store: the order entries were appended in


@dataclass(frozen=True)
class Quota:
    scope: str  # "workspace" or "env:<name>"
    resource: str  # containers, gpus, crons, web_endpoints, sandboxes
    limit: int
