"""Billing, app tags and the audit log over the Modal API: `modal billing rates | report | summary`,
`Environment.billing.summary()`, `App(tags=)`/`set_tags`/`get_tags`, and AuditLogList/AuditLogCount."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

from google.protobuf import empty_pb2
from google.protobuf.timestamp_pb2 import Timestamp
from modal_proto import api_pb2

from berth.api.caller import Caller
from berth.api.context import Services
from berth.errors import InvalidArgument
from berth.store.governance_records import AuditEntry

_FAR_FUTURE = 2**62


def _text(d: Decimal) -> str:
    return format(d.normalize(), "f") if d else "0"


def _timestamp(ts: float) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(datetime.fromtimestamp(ts, UTC))
    return out


def _when(ts: Timestamp) -> datetime:
    """A request's timestamp; INVALID_ARGUMENT for one protobuf cannot represent (nanos outside [0, 1e9),
    seconds outside years 1-9999), which ToDatetime refuses with ValueError."""
    try:
        when: datetime = ts.ToDatetime(UTC)
        return when
    except (ValueError, OverflowError) as exc:
        raise InvalidArgument(f"Invalid timestamp: {exc}") from None


def _audit_item(e: AuditEntry) -> api_pb2.AuditLogEntry:
    actor_type = "token" if e.actor.startswith("ak-") else ("container" if e.actor.startswith("ta-") else "user")
    return api_pb2.AuditLogEntry(
        id=e.entry_id,
        actor=api_pb2.AuditLogActor(type=actor_type, id=e.actor, name=e.actor),
        action=e.action,
        targets=[api_pb2.AuditLogTarget(type=e.target_type, id=e.target_id)],
        context=api_pb2.AuditLogContext(environment_name=e.environment, source="berth"),
        event_at=datetime.fromtimestamp(e.at, UTC).isoformat(),
        status=e.status,
        metadata_json=json.dumps(e.details, sort_keys=True),
    )


def _range(since: Timestamp, until: Timestamp | None, now: float) -> tuple[float, float]:
    """A [since, until) window in unix seconds, until now when open; minute buckets that start inside it count."""
    start = _when(since).timestamp()
    end = _when(until).timestamp() if until is not None else now + 1
    if end <= start:
        raise InvalidArgument("`since` must be before `until`")
    return start - start % 60, end


def _window(oldest_ms: int, newest_ms: int) -> tuple[float, float]:
    return oldest_ms / 1000.0, (newest_ms / 1000.0) if newest_ms else float(_FAR_FUTURE)


class GovernanceRpcs:
    s: Services

    # billing
    async def WorkspaceBillingRates(
        self, req: api_pb2.WorkspaceBillingRatesRequest, caller: Caller
    ) -> api_pb2.WorkspaceBillingRatesResponse:
        rates = await self.s.billing.rates()
        return api_pb2.WorkspaceBillingRatesResponse(
            rates={k: _text(v) for k, v in rates.items()}, formatted=self.s.billing.formatted(rates)
        )

    async def WorkspaceBillingReport(
        self, req: api_pb2.WorkspaceBillingReportRequest, caller: Caller
    ) -> AsyncIterator[api_pb2.WorkspaceBillingReportItem]:
        start, end = _when(req.start_timestamp), _when(req.end_timestamp)
        if req.HasField("end_timestamp") and end <= start:
            raise InvalidArgument("The report's end must come after its start")
        environments = {e.removeprefix("en-") for e in req.environment_ids} or None
        if caller.environment:  # a token scoped to one environment sees that environment's costs only
            environments = {caller.environment}
        items = await self.s.billing.report(
            start.timestamp(),
            end.timestamp() if req.HasField("end_timestamp") else float(_FAR_FUTURE),
            req.resolution or "d",
            list(req.tag_names),
            environments,
            set(req.app_ids) or None,
        )
        for item in items:
            yield api_pb2.WorkspaceBillingReportItem(
                object_id=item.object_id,
                description=item.description,
                environment_name=item.environment,
                interval=_timestamp(item.interval_start),
                cost=_text(item.cost),
                tags=item.tags,
                cost_by_resource={k: _text(v) for k, v in item.cost_by_resource.items()},
            )

    async def WorkspaceBillingSummary(
        self, req: api_pb2.WorkspaceBillingSummaryRequest, caller: Caller
    ) -> api_pb2.WorkspaceBillingSummaryResponse:
        start = _when(req.start_timestamp).timestamp()
        end, breakdown = await self.s.billing.summary(start, caller.environment)
        total = _text(sum(breakdown.values(), Decimal(0)))
        return api_pb2.WorkspaceBillingSummaryResponse(
            start_timestamp=_timestamp(start),
            end_timestamp=_timestamp(end),
            metered_cost=total,
            billed_cost=total,
            metered_cost_breakdown={k: _text(v) for k, v in breakdown.items()},
        )

    async def EnvironmentBillingSummary(
        self, req: api_pb2.EnvironmentBillingSummaryRequest, caller: Caller
    ) -> api_pb2.EnvironmentBillingSummaryResponse:
        environment = req.environment_id.removeprefix("en-")
        environment = self.s.accounts.scope(environment, caller.environment)
        await self.s.accounts.require_environment(environment)
        start = _when(req.start_timestamp).timestamp()
        end, breakdown = await self.s.billing.summary(start, environment)
        return api_pb2.EnvironmentBillingSummaryResponse(
            start_timestamp=_timestamp(start),
            end_timestamp=_timestamp(end),
            metered_cost=_text(sum(breakdown.values(), Decimal(0))),
            metered_cost_breakdown={k: _text(v) for k, v in breakdown.items()},
        )

    # sandbox costs (app.sandboxes.stats(), Sandbox._experimental_stats())
    async def SandboxGetTimeRangeStats(
        self, req: api_pb2.SandboxGetTimeRangeStatsRequest, caller: Caller
    ) -> api_pb2.SandboxGetTimeRangeStatsResponse:
        await self.s.apps.get(req.app_id)
        start, end = _range(req.since, req.until if req.HasField("until") else None, self.s.clock.now())
        groups = await self.s.billing.sandbox_groups(req.app_id, start, end, list(req.group_by_tags), dict(req.tags))
        reply = api_pb2.SandboxGetTimeRangeStatsResponse()
        for g in groups:
            tags = {
                k: api_pb2.SandboxStatsGroup.TagValue(value=v)
                if v is not None
                else api_pb2.SandboxStatsGroup.TagValue()
                for k, v in g.tags.items()
            }
            reply.groups.append(
                api_pb2.SandboxStatsGroup(
                    tags=tags,
                    cost=float(g.cost),
                    cost_str=_text(g.cost),
                    cost_by_resource={k: float(v) for k, v in g.cost_by_resource.items()},
                    cost_by_resource_str={k: _text(v) for k, v in g.cost_by_resource.items()},
                )
            )
        return reply

    async def SandboxGetStats(
        self, req: api_pb2.SandboxGetStatsRequest, caller: Caller
    ) -> api_pb2.SandboxGetStatsResponse:
        record = await self.s.sandboxes.get(req.sandbox_id)
        since = req.since if req.HasField("since") else _timestamp(record.created_at)  # default: its whole life
        start, end = _range(since, req.until if req.HasField("until") else None, self.s.clock.now())
        costs, cpu_s, memory_gib_s = await self.s.billing.object_cost(req.sandbox_id, start, end)
        return api_pb2.SandboxGetStatsResponse(
            cost=_text(sum(costs.values(), Decimal(0))),
            cost_by_resource={k: _text(v) for k, v in costs.items()},
            billed_cpu_core_seconds=cpu_s,
            billed_memory_gib_seconds=memory_gib_s,
            duration_hours=(end - start) / 3600.0,
            since=_timestamp(start),
            until=_timestamp(end),
        )

    # app tags
    async def AppSetTags(self, req: api_pb2.AppSetTagsRequest, caller: Caller) -> empty_pb2.Empty:
        await self.s.apps.get(req.app_id)
        await self.s.metering.set_app_tags(req.app_id, dict(req.tags))
        return empty_pb2.Empty()

    async def AppGetTags(self, req: api_pb2.AppGetTagsRequest, caller: Caller) -> api_pb2.AppGetTagsResponse:
        await self.s.apps.get(req.app_id)
        return api_pb2.AppGetTagsResponse(tags=await self.s.metering.app_tags(req.app_id))

    # audit log
    async def AuditLogList(self, req: api_pb2.AuditLogListRequest, caller: Caller) -> api_pb2.AuditLogListResponse:
        since, until = _window(req.oldest_ms, req.newest_ms)
        limit = req.limit or 100
        before = int(req.newest_cursor.id) if req.HasField("newest_cursor") and req.newest_cursor.id.isdigit() else 0
        entries = await self.s.audit.entries(since, until, limit, before)
        reply = api_pb2.AuditLogListResponse(items=[_audit_item(e) for e in entries])
        if len(entries) == limit:
            last = entries[-1]
            reply.next_cursor.CopyFrom(api_pb2.AuditLogCursor(event_at_desc=int(last.at * 1000), id=str(last.seq)))
        return reply

    async def AuditLogCount(self, req: api_pb2.AuditLogCountRequest, caller: Caller) -> api_pb2.AuditLogCountResponse:
        since, until = _window(req.oldest_ms, req.newest_ms)
        return api_pb2.AuditLogCountResponse(count=await self.s.audit.count(since, until))
