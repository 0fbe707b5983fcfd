"""The schedule trigger: `modal.Period` and `modal.Cron` functions of running apps get one input per tick.

Each tick is claimed in the schedules table before its input is created, under a primary key of
(function, tick time), so a tick runs at most once; a claimed tick whose input was not yet created
(the server died in between) is completed on restart, and ticks that fell due while the server was
down fire when it comes back, so none is lost. Runs that overlap behave as on Modal: every tick starts
its own input, and the autoscaler starts containers for them up to the function's limits. As on Modal,
re-creating a function (a redeploy, a `modal serve` reload) restarts a Period from that moment."""

from __future__ import annotations

import asyncio
import logging
import math
import pickle
from datetime import UTC, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from dateutil.relativedelta import relativedelta
from modal_proto import api_pb2

from berth.clock import Clock
from berth.errors import InvalidArgument
from berth.ids import new_id
from berth.services.apps import AppService
from berth.services.inputs import InputService
from berth.services.notify import Notifier
from berth.store.ports import CallStore, InputStore, ScheduleStore
from berth.store.records import CallRecord, ScheduleRow, TickRow

log = logging.getLogger("berth.schedules")

SCHEDULES_KEY = "schedules"
MAX_SLEEP_S = 1.0
# Ticks missed while the server was down fire on restart, up to this many per schedule (older are skipped).
MAX_CATCH_UP_TICKS = 100
# Fired ticks are kept this long (for inspection), then pruned; pruning runs about this often.
TICK_HISTORY_S = 86400.0
PRUNE_EVERY_S = 3600.0
# Cron's shorthands (crontab.guru's "@" strings); @reboot has no meaning for a schedule.
_MACROS = frozenset({"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"})
_EMPTY_ARGS = pickle.dumps(((), {}), protocol=4)


def _timezone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidArgument(f"Unknown timezone {name!r} in modal.Cron schedule") from exc


def validate(schedule: api_pb2.Schedule) -> None:
    """Raise InvalidArgument for a schedule that can never fire."""
    kind = schedule.WhichOneof("schedule_oneof")
    if kind == "cron":
        cron = schedule.cron.cron_string.strip()
        fields_ok = cron in _MACROS or len(cron.split()) == 5
        if not fields_ok or not croniter.is_valid(cron):
            raise InvalidArgument(
                f"Invalid cron string {cron!r}: expected 5 fields (minute hour day-of-month month day-of-week), "
                "e.g. '0 9 * * 1-5', or one of " + ", ".join(sorted(_MACROS))
            )
        _timezone(schedule.cron.timezone)
    elif kind == "period":
        p = schedule.period
        fields = (p.years, p.months, p.weeks, p.days, p.hours, p.minutes, p.seconds)
        if any(f < 0 for f in fields) or not any(fields):
            raise InvalidArgument("modal.Period needs a positive interval")
    else:
        raise InvalidArgument("A schedule needs a cron string or a period")


def next_tick(schedule: api_pb2.Schedule, anchor: float, after: float) -> float:
    """The first tick strictly after `after`. Periods count from `anchor`, the time the schedule was created."""
    if schedule.WhichOneof("schedule_oneof") == "cron":
        tz = _timezone(schedule.cron.timezone)
        start = datetime.fromtimestamp(after, tz)
        return float(croniter(schedule.cron.cron_string.strip(), start).get_next(float))
    p = schedule.period
    if not (p.years or p.months):
        seconds = timedelta(
            weeks=p.weeks, days=p.days, hours=p.hours, minutes=p.minutes, seconds=p.seconds
        ).total_seconds()
        k = max(1, math.floor((after - anchor) / seconds) + 1)
        t = anchor + k * seconds
        return t if t > after else t + seconds
    base = datetime.fromtimestamp(anchor, UTC)
    k = 1
    while True:
        offset = relativedelta(
            years=p.years * k,
            months=p.months * k,
            weeks=p.weeks * k,
            days=p.days * k,
            hours=p.hours * k,
            minutes=p.minutes * k,
            seconds=int(p.seconds * k),
        )
        t = (base + offset).timestamp()
        if t > after:
            return t
        k += 1


def overdue_tick(schedule: api_pb2.Schedule, anchor: float, due: float, now: float) -> float:
    """The tick to fire now: `due`, unless more than MAX_CATCH_UP_TICKS are overdue; then the oldest of
    the last MAX_CATCH_UP_TICKS (a server that was down for days does not replay every minute of them)."""
    overdue = [due]
    t = due
    while len(overdue) < 1_000_000:
        t = next_tick(schedule, anchor, t)
        if t > now:
            break
        overdue.append(t)
    return due if len(overdue) <= MAX_CATCH_UP_TICKS else overdue[-MAX_CATCH_UP_TICKS]


class TickCallStore(CallStore, InputStore, Protocol):
    """Where a claimed tick's call and input are created (and found again after a restart)."""


class ScheduleTrigger:
    def __init__(
        self,
        web_store: ScheduleStore,
        store: TickCallStore,
        apps: AppService,
        inputs: InputService,
        notifier: Notifier,
        clock: Clock,
    ) -> None:
        self._ws = web_store
        self._store = store
        self._apps = apps
        self._inputs = inputs
        self._notifier = notifier
        self._clock = clock

    # a Catalog definition hook
    async def register(self, app_id: str, function_id: str, fn: api_pb2.Function, final: bool) -> None:
        if not fn.HasField("schedule"):
            if final and await self._ws.schedule(function_id) is not None:
                await self._ws.delete_schedule(function_id)
            return
        validate(fn.schedule)
        spec = fn.schedule.SerializeToString(deterministic=True)
        if not final:
            return
        existing = await self._ws.schedule(function_id)
        if existing is not None and existing.spec == spec and fn.schedule.WhichOneof("schedule_oneof") == "cron":
            return  # a cron grid is fixed by the clock; only a redeploy of a Period restarts it (as on Modal)
        now = self._clock.now()
        await self._ws.put_schedule(ScheduleRow(function_id, app_id, spec, now, next_tick(fn.schedule, now, now)))
        self._notifier.notify(SCHEDULES_KEY)

    async def run(self) -> None:
        await self.recover()
        pruned_at = 0.0
        while True:
            if self._clock.now() - pruned_at > PRUNE_EVERY_S:
                pruned_at = self._clock.now()
                await self._ws.prune_ticks(pruned_at - TICK_HISTORY_S)
            fired = 0
            try:
                fired = await self.tick()
            except Exception:
                log.exception("schedule trigger failed")
            if fired:
                await asyncio.sleep(0)
                continue
            # Nothing fired: sleep until the next tick, or a while if a due one cannot fire yet (its app
            # has not published its layout), so such a schedule is polled, not spun on.
            earliest = await self._ws.earliest_tick()
            now = self._clock.now()
            wait = MAX_SLEEP_S if earliest is None or earliest <= now else min(MAX_SLEEP_S, earliest - now)
            with self._notifier.listen(SCHEDULES_KEY) as waiter:
                await waiter.wait(wait)

    async def recover(self) -> None:
        """Finish ticks that were claimed but whose input was not created before the server stopped."""
        for tick in await self._ws.pending_ticks():
            await self._create_input(tick)

    async def tick(self) -> int:
        """Fire the oldest due tick of every due schedule; returns how many fired."""
        now = self._clock.now()
        fired = 0
        for row in await self._ws.due_schedules(now):
            if not await self._apps.is_running(row.app_id):
                await self._ws.delete_schedule(row.function_id)
                continue
            layout = await self._apps.layout(row.app_id)
            if row.function_id not in layout.function_ids.values():
                continue  # not published yet (or no longer part of the app)
            fired += await self._fire(row, now)
        return fired

    async def _fire(self, row: ScheduleRow, now: float) -> int:
        schedule = api_pb2.Schedule.FromString(row.spec)
        due = overdue_tick(schedule, row.anchor, row.next_tick, now)
        if due != row.next_tick:
            log.warning("schedule of %s: skipped ticks older than the last %d", row.function_id, MAX_CATCH_UP_TICKS)
        tick = TickRow(row.function_id, due, new_id("fc"), new_id("in"), "pending")
        if not await self._ws.record_tick(tick, next_tick(schedule, row.anchor, due)):
            return 0
        log.info("schedule tick of %s at %s", row.function_id, datetime.fromtimestamp(due, UTC).isoformat())
        await self._create_input(tick)
        return 1

    async def _create_input(self, tick: TickRow) -> None:
        if await self._store.get_call(tick.call_id) is None:
            await self._store.create_call(
                CallRecord(
                    tick.call_id,
                    tick.function_id,
                    api_pb2.FUNCTION_CALL_TYPE_UNARY,
                    api_pb2.FUNCTION_CALL_INVOCATION_TYPE_ASYNC,
                    False,
                    0,
                    True,
                    self._clock.now(),
                )
            )
        if await self._store.get_input(tick.input_id) is None:
            payload = api_pb2.FunctionInput(args=_EMPTY_ARGS, data_format=api_pb2.DATA_FORMAT_PICKLE)
            await self._inputs.enqueue(
                tick.call_id, tick.function_id, [(tick.input_id, 0, "", payload.SerializeToString())]
            )
        await self._ws.mark_fired(tick.function_id, tick.tick_at)
