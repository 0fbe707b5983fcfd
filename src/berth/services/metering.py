"""Metering on the control plane: the usage samples workers send (berth.domain.usage) are attributed to
their function or sandbox, app, environment and tags, and kept per task and minute in the governance store.
`rollup` reads them back summed per function, app, environment or tag, over any window: what billing prices
and what a dashboard shows."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from berth.clock import Clock
from berth.domain.usage import UsageSample
from berth.errors import InvalidArgument
from berth.store.governance_records import UsageRow
from berth.store.ports import AppStore, FunctionStore, GovernanceStore

log = logging.getLogger("berth.metering")

# A sandbox's tags (Sandbox.create(tags=), set_tags), by sandbox id; {} when unknown.
SandboxTags = Callable[[str], Awaitable[dict[str, str]]]


class MeteringStores(AppStore, FunctionStore, Protocol):
    """Where attribution is read from: apps (name, environment) and functions (their names)."""


@dataclass(frozen=True)
class _Attribution:
    object_id: str
    environment: str
    description: str


@dataclass
class Usage:
    """Summed usage of one group over a window."""

    key: str  # the function or sandbox id, app id, environment name or tag value the group is of
    cpu_s: float = 0.0
    memory_gib_s: float = 0.0
    gpu_s: dict[str, float] = field(default_factory=dict)  # by GPU type

    def add(self, row: UsageRow) -> None:
        self.cpu_s += row.cpu_s
        self.memory_gib_s += row.memory_gib_s
        if row.gpu_s:
            self.gpu_s[row.gpu_type] = self.gpu_s.get(row.gpu_type, 0.0) + row.gpu_s


def group_key(row: UsageRow, by: str) -> str | None:
    """The group a row falls in: by "function" (or sandbox), "app", "environment" or "tag:NAME" (None when
    the row has no such tag)."""
    if by == "function":
        return row.object_id
    if by == "app":
        return row.app_id
    if by == "environment":
        return row.environment
    if by.startswith("tag:"):
        return row.tags.get(by[4:])
    raise InvalidArgument(f"Unknown grouping {by!r}: use function, app, environment or tag:NAME")


class MeteringService:
    def __init__(self, store: GovernanceStore, records: MeteringStores, clock: Clock) -> None:
        self._store = store
        self._records = records
        self._clock = clock
        self._attributions: dict[str, _Attribution] = {}
        self._writes: set[asyncio.Task[None]] = set()
        self.sandbox_tags: SandboxTags | None = None

    def sink(self, samples: list[UsageSample]) -> None:
        """The worker port's usage sink (it is called synchronously): records in the background."""
        task = asyncio.ensure_future(self.record(samples))
        self._writes.add(task)
        task.add_done_callback(self._written)

    def _written(self, task: asyncio.Task[None]) -> None:
        self._writes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("usage samples were not stored: %s", task.exception())

    async def settle(self) -> None:
        """Waits for the samples handed to `sink` so far to be stored."""
        while self._writes:
            await asyncio.gather(*list(self._writes), return_exceptions=True)

    async def record(self, samples: Sequence[UsageSample]) -> None:
        rows = []
        for s in samples:
            who = await self._attribute(s)
            tags = await self._tags(s)
            rows.append(
                UsageRow(
                    s.task_id,
                    s.bucket,
                    who.object_id,
                    s.app_id,
                    s.function_id,
                    who.environment,
                    who.description,
                    tags,
                    s.gpu_type,
                    s.cpu_s,
                    s.memory_gib_s,
                    s.gpu_s,
                )
            )
        if rows:
            await self._store.add_usage(rows)

    async def _attribute(self, s: UsageSample) -> _Attribution:
        known = self._attributions.get(s.task_id)
        if known is not None:
            return known
        app = await self._records.get_app(s.app_id)
        app_name = (app.name or app.description) if app is not None else s.app_id
        environment = app.environment if app is not None else ""
        if s.sandbox_id:
            who = _Attribution(s.sandbox_id, environment, f"{app_name} (sandbox)")
        else:
            fn = await self._records.get_function(s.function_id)
            who = _Attribution(s.function_id, environment, f"{app_name}.{fn.tag}" if fn is not None else app_name)
        if len(self._attributions) > 10_000:
            self._attributions.clear()
        self._attributions[s.task_id] = who
        return who

    async def _tags(self, s: UsageSample) -> dict[str, str]:
        """The app's tags, with a sandbox's own on top, as they are while it runs."""
        tags = await self._store.app_tags(s.app_id)
        if s.sandbox_id and self.sandbox_tags is not None:
            tags = {**tags, **await self.sandbox_tags(s.sandbox_id)}
        return tags

    async def rows(self, start: float, end: float) -> list[UsageRow]:
        return await self._store.usage_between(start, end)

    async def rollup(self, start: float, end: float, by: str = "function") -> list[Usage]:
        """Usage in [start, end) summed per group (see group_key), largest CPU first. For a dashboard."""
        groups: dict[str, Usage] = {}
        for row in await self._store.usage_between(start, end):
            key = group_key(row, by)
            if key is not None:
                groups.setdefault(key, Usage(key)).add(row)
        return sorted(groups.values(), key=lambda u: (-u.cpu_s, u.key))

    # app tags (modal.App(tags=), App.set_tags)
    async def set_app_tags(self, app_id: str, tags: dict[str, str]) -> None:
        await self._store.set_app_tags(app_id, dict(tags))

    async def app_tags(self, app_id: str) -> dict[str, str]:
        return await self._store.app_tags(app_id)
