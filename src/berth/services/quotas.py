"""Quotas per environment and per workspace, set by the operator (`berth quota set`): containers and GPUs
running at once, sandboxes running at once, scheduled functions (cron jobs) and web endpoints.

A request over a quota is never dropped. Containers and GPUs wait, as on Modal (an environment's
max_concurrent_tasks): the function's inputs stay queued and the caller is told why, and they start once
others exit. A sandbox over its quota fails at once with ResourceExhaustedError, as does a deploy (or run)
that would define more cron jobs or web endpoints than allowed. Every quota change is audited."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from modal_proto import api_pb2

from berth.clock import Clock
from berth.domain.gpu import function_requests
from berth.errors import InvalidArgument, ResourceExhausted
from berth.services.audit import AuditLog
from berth.store.governance_records import Quota
from berth.store.ports import AppStore, FunctionStore, GovernanceStore, WebStore

RESOURCES = ("containers", "gpus", "sandboxes", "crons", "web_endpoints")
WORKSPACE = "workspace"
_NOUNS = {
    "containers": "containers at a time",
    "gpus": "GPUs at a time",
    "sandboxes": "sandboxes at a time",
    "crons": "scheduled functions (cron jobs)",
    "web_endpoints": "web endpoints",
}


@dataclass(frozen=True)
class LiveTask:
    """A container running now: its app, its function ('' for a sandbox), and its sandbox ('' for a function)."""

    app_id: str
    function_id: str
    sandbox_id: str


LiveTasks = Callable[[], list[LiveTask]]


class QuotaStores(AppStore, FunctionStore, Protocol):
    """Apps (their environment) and functions (their GPUs)."""


def scope_of(environment: str | None) -> str:
    return f"env:{environment}" if environment else WORKSPACE


def _describe(scope: str) -> str:
    return "the workspace" if scope == WORKSPACE else f"environment '{scope.removeprefix('env:')}'"


class QuotaService:
    def __init__(
        self, store: GovernanceStore, records: QuotaStores, web: WebStore, audit: AuditLog, clock: Clock
    ) -> None:
        self._store = store
        self._records = records
        self._web = web
        self._audit = audit
        self._clock = clock
        self.live_tasks: LiveTasks = list

    async def set(self, environment: str | None, limits: dict[str, int], actor: str) -> None:
        """Sets (or, with a negative limit, removes) quotas of an environment, or of the workspace."""
        for resource in limits:
            if resource not in RESOURCES:
                raise InvalidArgument(f"Unknown quota {resource!r}: quotas are {', '.join(RESOURCES)}")
        scope = scope_of(environment)
        for resource, limit in limits.items():
            await self._store.set_quota(Quota(scope, resource, limit))
        details = {r: str(n) if n >= 0 else "removed" for r, n in limits.items()}
        await self._audit.record(actor, "quota.set", "quota", scope, environment or "", "ok", details)

    async def quotas(self) -> list[Quota]:
        return await self._store.quotas()

    async def _limits(self, environment: str) -> list[tuple[str, str, int]]:
        """(scope, resource, limit) of the quotas that apply in an environment."""
        scopes = {WORKSPACE, scope_of(environment)}
        return [(q.scope, q.resource, q.limit) for q in await self._store.quotas() if q.scope in scopes]

    async def _environment(self, app_id: str) -> str:
        app = await self._records.get_app(app_id)
        return app.environment if app is not None else ""

    async def _gpus(self, function_id: str) -> int:
        fn = await self._records.get_function(function_id)
        if fn is None:
            return 0
        definition = api_pb2.Function.FromString(fn.definition)
        requests = function_requests(definition)
        return requests[0][1] if requests else 0

    async def _in_use(self, environment: str, resource: str) -> tuple[int, int]:
        """What runs now of a resource: (in this environment, in the workspace)."""
        env_count = all_count = 0
        for task in self.live_tasks():
            if resource == "sandboxes" and not task.sandbox_id:
                continue
            amount = await self._gpus(task.function_id) if resource == "gpus" and task.function_id else 1
            if resource == "gpus" and not task.function_id:
                amount = 0
            all_count += amount
            if await self._environment(task.app_id) == environment:
                env_count += amount
        return env_count, all_count

    async def _over(self, environment: str, resource: str, adding: int) -> str | None:
        limits = [(s, n) for s, r, n in await self._limits(environment) if r == resource]
        if not limits or adding <= 0:
            return None
        env_count, all_count = await self._in_use(environment, resource)
        for scope, limit in limits:
            used = all_count if scope == WORKSPACE else env_count
            if used + adding > limit:
                return f"Quota reached: {_describe(scope)} allows {limit} {_NOUNS[resource]} and {used} are in use"
        return None

    async def container_blocker(self, app_id: str, function_id: str) -> str | None:
        """Why a container for this function must wait (its environment's or the workspace's container or
        GPU quota is taken); None when it may start."""
        environment = await self._environment(app_id)
        reason = await self._over(environment, "containers", 1)
        if reason is None:
            reason = await self._over(environment, "gpus", await self._gpus(function_id))
        return f"{reason}; the call stays queued until one is free" if reason else None

    async def check_sandbox(self, app_id: str) -> None:
        reason = await self._over(await self._environment(app_id), "sandboxes", 1)
        if reason is not None:
            raise ResourceExhausted(f"Cannot create the sandbox. {reason}")

    async def check_definition(self, app_id: str, function_id: str, fn: api_pb2.Function, final: bool) -> None:
        """A catalog definition hook: a function that would take its environment or the workspace past the
        cron job or web endpoint quota is refused before it is registered."""
        wants = []
        if not final:
            return
        if fn.HasField("schedule"):
            wants.append(("crons", {r.function_id: r.app_id for r in await self._web.due_schedules(float("inf"))}))
        if fn.HasField("webhook_config") and fn.webhook_config.type:
            wants.append(("web_endpoints", {e.function_id: e.app_id for e in await self._web.endpoints()}))
        environment = await self._environment(app_id)
        for resource, owners in wants:
            limits = [(s, n) for s, r, n in await self._limits(environment) if r == resource]
            if not limits:
                continue
            others = {f: a for f, a in owners.items() if f != function_id}
            running = [a for a in others.values() if await self._running(a)]
            in_env = [a for a in running if await self._environment(a) == environment]
            for scope, limit in limits:
                used = len(running) if scope == WORKSPACE else len(in_env)
                if used + 1 > limit:
                    name = fn.function_name or function_id
                    raise ResourceExhausted(
                        f"Cannot define {name}: {_describe(scope)} allows {limit} {_NOUNS[resource]} and has "
                        f"{used} already (berth quota set)"
                    )

    async def _running(self, app_id: str) -> bool:
        app = await self._records.get_app(app_id)
        return app is not None and app.stopped_at is None
