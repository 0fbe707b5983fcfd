"""The audit log: every administrative action (deploys, app stops and rollbacks, secret, environment, token,
rate and quota changes), with who did it (the client token's id, a container's task id, or `local:<user>`
for the berth CLI on the server's host), when, on what, and whether it succeeded. Entries name objects and
keys, never values: a secret's values, a token's secret and request payloads are not recorded."""

from __future__ import annotations

import getpass
import logging

from berth.clock import Clock
from berth.ids import new_id
from berth.store.governance_records import AuditEntry
from berth.store.ports import GovernanceStore

log = logging.getLogger("berth.audit")


def local_actor() -> str:
    """The actor of an action taken with the berth CLI on the server's host (it holds no client token)."""
    try:
        return f"local:{getpass.getuser()}"
    except (KeyError, OSError):
        return "local"


class AuditLog:
    def __init__(self, store: GovernanceStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def record(
        self,
        actor: str,
        action: str,
        target_type: str,
        target_id: str,
        environment: str = "",
        status: str = "ok",
        details: dict[str, str] | None = None,
    ) -> AuditEntry:
        entry = AuditEntry(
            new_id("al"),
            self._clock.now(),
            actor,
            action,
            target_type,
            target_id,
            environment,
            status,
            dict(details or {}),
        )
        await self._store.append_audit(entry)
        log.info("audit: %s %s %s:%s (%s)", actor, action, target_type, target_id, status)
        return entry

    async def entries(self, since: float, until: float, limit: int = 100, before_seq: int = 0) -> list[AuditEntry]:
        return await self._store.audit_entries(since, until, max(1, min(limit, 1000)), before_seq)

    async def count(self, since: float, until: float) -> int:
        return await self._store.count_audit(since, until)
