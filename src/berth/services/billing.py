"""Billing: metered usage priced by the operator's rates table. Answers `modal billing rates | report |
summary` (WorkspaceBillingRates/Report/Summary, EnvironmentBillingSummary).

Rates are per second: `cpu` per core-second, `memory` per GiB-second, `gpu:<TYPE>` per GPU-second of that
type (the type a function asked for, e.g. `gpu:A100`), `gpu` for any type without a rate of its own. The
defaults are Modal's published list prices (December 2026); `berth rates set` replaces any of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from berth.errors import InvalidArgument
from berth.services.metering import MeteringService
from berth.store.governance_records import UsageRow
from berth.store.ports import GovernanceStore

DEFAULT_RATES: dict[str, str] = {
    "cpu": "0.0000131",
    "memory": "0.00000222",
    "gpu": "0.000583",
    "gpu:T4": "0.000164",
    "gpu:L4": "0.000222",
    "gpu:A10G": "0.000306",
    "gpu:L40S": "0.000542",
    "gpu:A100": "0.000583",
    "gpu:A100-80GB": "0.000694",
    "gpu:H100": "0.001097",
    "gpu:H200": "0.001261",
    "gpu:B200": "0.001736",
}
_RESOLUTIONS = {"d": 86400, "h": 3600}
_EXACT = Decimal("0.000001")  # costs are reported to a millionth of a dollar


@dataclass
class ReportItem:
    """The cost one function or sandbox generated in one interval, by resource."""

    object_id: str
    description: str
    environment: str
    interval_start: int
    tags: dict[str, str] = field(default_factory=dict)
    cost_by_resource: dict[str, Decimal] = field(default_factory=dict)

    @property
    def cost(self) -> Decimal:
        return sum(self.cost_by_resource.values(), Decimal(0))


def parse_rate(resource: str, rate: str) -> Decimal:
    if not (resource in ("cpu", "memory", "gpu") or (resource.startswith("gpu:") and len(resource) > 4)):
        raise InvalidArgument(f"Unknown resource {resource!r}: rates are for cpu, memory, gpu and gpu:<TYPE>")
    try:
        value = Decimal(rate)
    except InvalidOperation as exc:
        raise InvalidArgument(f"The rate for {resource} is not a number: {rate!r}") from exc
    if not value.is_finite() or value < 0:
        raise InvalidArgument(f"The rate for {resource} must be a non-negative number, not {rate!r}")
    return value


def month_after(start: datetime) -> datetime:
    if start.month == 12:
        return start.replace(year=start.year + 1, month=1, day=1)
    return start.replace(month=start.month + 1, day=1)


class BillingService:
    def __init__(self, store: GovernanceStore, metering: MeteringService) -> None:
        self._store = store
        self._metering = metering

    async def rates(self) -> dict[str, Decimal]:
        stored = await self._store.rates()
        return {k: Decimal(v) for k, v in {**DEFAULT_RATES, **stored}.items()}

    async def set_rates(self, rates: dict[str, str]) -> None:
        """Sets rates (a decimal per resource); "default" puts a resource back to Berth's default."""
        checked: dict[str, str] = {}
        for resource, rate in rates.items():
            if rate == "default":
                checked[resource] = ""
            else:
                checked[resource] = str(parse_rate(resource, rate))
        await self._store.set_rates(checked)

    @staticmethod
    def formatted(rates: dict[str, Decimal]) -> str:
        lines = ["Rates (USD per second):"]
        for k in sorted(rates):
            unit = {"cpu": "per CPU core", "memory": "per GiB of memory"}.get(k, "per GPU")
            lines.append(f"  {k:<16} {rates[k]:>12}  {unit}")
        return "\n".join(lines)

    def _price(self, rates: dict[str, Decimal], row: UsageRow) -> dict[str, Decimal]:
        costs = {
            "CPU": Decimal(repr(row.cpu_s)) * rates["cpu"],
            "Memory": Decimal(repr(row.memory_gib_s)) * rates["memory"],
        }
        if row.gpu_s:
            rate = rates.get(f"gpu:{row.gpu_type}", rates["gpu"])
            costs[row.gpu_type or "GPU"] = Decimal(repr(row.gpu_s)) * rate
        return costs

    async def report(
        self,
        start: float,
        end: float,
        resolution: str = "d",
        tag_names: list[str] | None = None,
        environments: set[str] | None = None,
        app_ids: set[str] | None = None,
    ) -> list[ReportItem]:
        """Cost per function or sandbox and interval in [start, end), oldest interval first. The interval
        now in progress is included with what it has used so far."""
        step = _RESOLUTIONS.get(resolution)
        if step is None:
            raise InvalidArgument(f"Unknown resolution {resolution!r}: use 'd' (daily) or 'h' (hourly)")
        first = int(start // step) * step
        rates = await self.rates()
        items: dict[tuple[str, int], ReportItem] = {}
        for row in await self._metering.rows(first, end):
            if (environments and row.environment not in environments) or (app_ids and row.app_id not in app_ids):
                continue
            interval = int(row.bucket // step) * step
            item = items.get((row.object_id, interval))
            if item is None:
                item = items[(row.object_id, interval)] = ReportItem(
                    row.object_id, row.description, row.environment, interval
                )
            item.tags = _pick_tags(row.tags, tag_names)  # rows come oldest first: the latest tags win
            for resource, cost in self._price(rates, row).items():
                item.cost_by_resource[resource] = item.cost_by_resource.get(resource, Decimal(0)) + cost
        for item in items.values():
            item.cost_by_resource = {k: v.quantize(_EXACT) for k, v in item.cost_by_resource.items()}
        return sorted(items.values(), key=lambda i: (i.interval_start, i.object_id))

    async def sandbox_groups(
        self, app_id: str, start: float, end: float, group_by: list[str], having: dict[str, str]
    ) -> list[SandboxGroup]:
        """`App.sandboxes.stats()`: the cost of an app's sandboxes that carry the tags `having`, per combination
        of the values of the tags in `group_by` (None where a sandbox lacks one)."""
        rates = await self.rates()
        groups: dict[tuple[str | None, ...], SandboxGroup] = {}
        for row in await self._metering.rows(start, end):
            if row.app_id != app_id or not row.object_id.startswith("sb-"):
                continue
            if any(row.tags.get(k) != v for k, v in having.items()):
                continue
            key = tuple(row.tags.get(name) for name in group_by)
            group = groups.setdefault(key, SandboxGroup(dict(zip(group_by, key, strict=True))))
            for resource, cost in self._price(rates, row).items():
                group.cost_by_resource[resource] = group.cost_by_resource.get(resource, Decimal(0)) + cost
        for group in groups.values():
            group.cost_by_resource = {k: v.quantize(_EXACT) for k, v in group.cost_by_resource.items()}
        return list(groups.values())

    async def object_cost(self, object_id: str, start: float, end: float) -> tuple[dict[str, Decimal], float, float]:
        """One function's or sandbox's cost per resource in [start, end), with its CPU core-seconds and memory
        GiB-seconds (`Sandbox._experimental_stats()`)."""
        rates = await self.rates()
        costs: dict[str, Decimal] = {}
        cpu = memory = 0.0
        for row in await self._metering.rows(start, end):
            if row.object_id != object_id:
                continue
            cpu, memory = cpu + row.cpu_s, memory + row.memory_gib_s
            for resource, cost in self._price(rates, row).items():
                costs[resource] = costs.get(resource, Decimal(0)) + cost
        return {k: v.quantize(_EXACT) for k, v in costs.items()}, cpu, memory

    async def summary(self, start: float, environment: str | None = None) -> tuple[float, dict[str, Decimal]]:
        """The billing cycle (calendar month, UTC) starting at `start`: its end and cost per resource."""
        begin = datetime.fromtimestamp(start, UTC)
        if begin.day != 1 or begin.time() != datetime.min.time():
            raise InvalidArgument("A billing summary starts on the first of a month (UTC)")
        try:
            end = month_after(begin).timestamp()
        except (ValueError, OverflowError):
            raise InvalidArgument("A billing summary starts before December of year 9999") from None
        rates = await self.rates()
        breakdown: dict[str, Decimal] = {}
        for row in await self._metering.rows(start, end):
            if environment is not None and row.environment != environment:
                continue
            for resource, cost in self._price(rates, row).items():
                breakdown[resource] = breakdown.get(resource, Decimal(0)) + cost
        return end, {k: v.quantize(_EXACT) for k, v in breakdown.items()}


@dataclass
class SandboxGroup:
    """The cost of a group of sandboxes (those with the same values of some tags) over a window."""

    tags: dict[str, str | None]
    cost_by_resource: dict[str, Decimal] = field(default_factory=dict)

    @property
    def cost(self) -> Decimal:
        return sum(self.cost_by_resource.values(), Decimal(0))


def _pick_tags(tags: dict[str, str], names: list[str] | None) -> dict[str, str]:
    if not names:
        return {}
    if "*" in names:
        return dict(tags)
    return {k: v for k, v in tags.items() if k in names}
