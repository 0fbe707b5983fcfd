"""Pure logic of schedules and the web front door: tick arithmetic, cron validation, the exactly-once
trigger over a real SQLite file with a fake clock, ASGI message framing and endpoint naming."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from modal_proto import api_pb2

from berth.errors import InvalidArgument
from berth.scheduling.schedules import MAX_CATCH_UP_TICKS, ScheduleTrigger, next_tick, overdue_tick, validate
from berth.services.catalog import Catalog
from berth.services.inputs import InputService
from berth.services.notify import Notifier
from berth.services.web import decode_message, encode_message, endpoint_key
from berth.store.sqlite import SqliteStore
from berth.store.sqlite.web import TickRow, WebStore


def period(**kw: Any) -> api_pb2.Schedule:
    return api_pb2.Schedule(period=api_pb2.Schedule.Period(**kw))


def cron(expr: str, tz: str = "") -> api_pb2.Schedule:
    return api_pb2.Schedule(cron=api_pb2.Schedule.Cron(cron_string=expr, timezone=tz))


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_period_ticks_count_from_the_anchor() -> None:
    s = period(seconds=5)
    assert next_tick(s, 100.0, 100.0) == 105.0
    assert next_tick(s, 100.0, 104.9) == 105.0
    assert next_tick(s, 100.0, 105.0) == 110.0
    assert next_tick(period(minutes=1, seconds=30), 0.0, 200.0) == 270.0


def test_calendar_period_adds_months() -> None:
    s = period(months=1)
    assert next_tick(s, ts("2026-01-15T10:00:00"), ts("2026-01-15T10:00:00")) == ts("2026-02-15T10:00:00")
    assert next_tick(s, ts("2026-01-15T10:00:00"), ts("2026-03-01T00:00:00")) == ts("2026-03-15T10:00:00")


def test_cron_follows_its_timezone() -> None:
    # 09:00 in Kolkata is 03:30 UTC.
    assert next_tick(cron("0 9 * * *", "Asia/Kolkata"), 0, ts("2026-06-01T00:00:00")) == ts("2026-06-01T03:30:00")
    assert next_tick(cron("0 9 * * *"), 0, ts("2026-06-01T00:00:00")) == ts("2026-06-01T09:00:00")
    # Across a DST change the wall-clock time stays: 09:00 New York is 14:00 UTC in winter, 13:00 in summer.
    ny = cron("0 9 * * *", "America/New_York")
    assert next_tick(ny, 0, ts("2026-01-10T00:00:00")) == ts("2026-01-10T14:00:00")
    assert next_tick(ny, 0, ts("2026-07-10T00:00:00")) == ts("2026-07-10T13:00:00")


@pytest.mark.parametrize(
    "schedule",
    [
        cron("61 * * * *"),
        cron("* * * *"),
        cron("0 0 * * * *"),
        cron("not a cron"),
        cron("@reboot"),
        cron("* * * * *", "Mars/Olympus"),
        period(),
        period(seconds=-5),
        api_pb2.Schedule(),
    ],
)
def test_invalid_schedules_are_refused(schedule: api_pb2.Schedule) -> None:
    with pytest.raises(InvalidArgument):
        validate(schedule)


@pytest.mark.parametrize(
    "schedule",
    [
        cron("*/5 9-17 * * 1-5", "Europe/Berlin"),
        cron("0 0 1 JAN *"),
        cron("0 0 L * *"),
        cron("0 0 * * 5#3"),
        cron("@daily", "Asia/Tokyo"),
        period(days=1),
    ],
)
def test_valid_schedules_are_accepted(schedule: api_pb2.Schedule) -> None:
    validate(schedule)


def test_cron_shorthand_fires_like_its_expansion() -> None:
    assert next_tick(cron("@hourly"), 0, ts("2026-06-01T10:20:00")) == ts("2026-06-01T11:00:00")


def test_a_long_outage_replays_only_the_last_ticks() -> None:
    s = period(seconds=1)
    assert overdue_tick(s, 0.0, 1.0, 50.0) == 1.0
    assert overdue_tick(s, 0.0, 1.0, 10_000.0) == 10_000.0 - MAX_CATCH_UP_TICKS + 1


class _Clock:
    def __init__(self, now: float) -> None:
        self.t = now

    def now(self) -> float:
        return self.t

    def monotonic(self) -> float:
        return self.t


class _Apps:
    async def is_running(self, app_id: str) -> bool:
        return True

    async def layout(self, app_id: str) -> api_pb2.AppLayout:
        return api_pb2.AppLayout(function_ids={"f": "fu-1"})


async def _trigger(store: SqliteStore, clock: _Clock) -> ScheduleTrigger:
    notifier = Notifier()
    inputs = InputService(store, Catalog(store), notifier, clock)
    return ScheduleTrigger(WebStore(store.connection), store, _Apps(), inputs, notifier, clock)  # type: ignore[arg-type]


async def _drain(trigger: ScheduleTrigger) -> None:
    for _ in range(50):
        await trigger.tick()


def _inputs_per_call(store: SqliteStore) -> list[int]:
    return [r[0] for r in store.connection.execute("SELECT count(*) FROM inputs GROUP BY call_id").fetchall()]


async def test_each_tick_fires_once_across_a_restart(tmp_path: Path) -> None:
    clock = _Clock(1000.0)
    store = await SqliteStore.open(tmp_path / "db.sqlite")
    trigger = await _trigger(store, clock)
    fn = api_pb2.Function(function_name="f", schedule=period(seconds=10))
    await trigger.register("ap-1", "fu-1", fn, True)
    clock.t = 1035.0
    await _drain(trigger)
    await store.close()

    store = await SqliteStore.open(tmp_path / "db.sqlite")  # the server restarts
    clock.t = 1045.0
    trigger = await _trigger(store, clock)
    await trigger.recover()
    await _drain(trigger)
    ticks = await WebStore(store.connection).ticks("fu-1")
    assert [t.tick_at for t in ticks] == [1010.0, 1020.0, 1030.0, 1040.0]
    assert {t.state for t in ticks} == {"fired"}
    assert _inputs_per_call(store) == [1, 1, 1, 1]
    await store.close()


async def test_a_redeploy_restarts_a_period_but_not_a_cron_grid(tmp_path: Path) -> None:
    clock = _Clock(1000.0)
    store = await SqliteStore.open(tmp_path / "db.sqlite")
    trigger = await _trigger(store, clock)
    web = WebStore(store.connection)
    await trigger.register("ap-1", "fu-1", api_pb2.Function(schedule=period(seconds=10)), True)
    await trigger.register("ap-1", "fu-2", api_pb2.Function(schedule=cron("*/5 * * * *")), True)
    clock.t = 1004.0
    await trigger.register("ap-1", "fu-1", api_pb2.Function(schedule=period(seconds=10)), True)
    await trigger.register("ap-1", "fu-2", api_pb2.Function(schedule=cron("*/5 * * * *")), True)
    assert (await web.schedule("fu-1")).next_tick == 1014.0  # type: ignore[union-attr]
    assert (await web.schedule("fu-2")).next_tick == 1200.0  # type: ignore[union-attr]
    await trigger.register("ap-1", "fu-2", api_pb2.Function(), True)  # the schedule was removed
    assert await web.schedule("fu-2") is None
    await store.close()


async def test_a_claimed_tick_whose_input_was_lost_is_completed_once_on_restart(tmp_path: Path) -> None:
    clock = _Clock(1000.0)
    store = await SqliteStore.open(tmp_path / "db.sqlite")
    web = WebStore(store.connection)
    # The server died right after claiming the tick, before its input existed.
    await web.record_tick(TickRow("fu-1", 1010.0, "fc-x", "in-x", "pending"), 1020.0)
    trigger = await _trigger(store, clock)
    await trigger.recover()
    await trigger.recover()
    assert [t.state for t in await web.ticks("fu-1")] == ["fired"]
    assert _inputs_per_call(store) == [1]
    await store.close()


async def test_malformed_schedule_is_refused_at_precreate_and_create(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "db.sqlite")
    trigger = await _trigger(store, _Clock(0.0))
    for final in (False, True):
        with pytest.raises(InvalidArgument, match="Invalid cron string"):
            await trigger.register("ap-1", "fu-1", api_pb2.Function(schedule=cron("x")), final)
    await store.close()


def test_asgi_client_messages_round_trip_through_the_proto() -> None:
    raw = encode_message({"type": "http.request", "body": b"abc", "more_body": True})
    a = api_pb2.Asgi.FromString(raw)
    assert a.http_request.body == b"abc" and a.http_request.more_body
    ws = api_pb2.Asgi.FromString(encode_message({"type": "websocket.receive", "bytes": b"\x00"}))
    assert ws.websocket_receive.bytes == b"\x00"
    with pytest.raises(ValueError):
        encode_message({"type": "http.response.start"})


def test_asgi_app_messages_decode_with_header_pairs() -> None:
    start = api_pb2.Asgi(
        http_response_start=api_pb2.Asgi.HttpResponseStart(status=201, headers=[b"a", b"1", b"b", b"2"])
    )
    assert decode_message(start.SerializeToString()) == {
        "type": "http.response.start",
        "status": 201,
        "headers": [(b"a", b"1"), (b"b", b"2")],
    }
    close = api_pb2.Asgi(websocket_close=api_pb2.Asgi.WebsocketClose(reason="bye"))
    assert decode_message(close.SerializeToString()) == {"type": "websocket.close", "code": 1000, "reason": "bye"}


def test_endpoint_keys_follow_modal_naming() -> None:
    assert endpoint_key("main", "My App", "WebApp.web", "", True) == "main/my-app-webapp-web-dev"
    assert endpoint_key("main", "my-app", "hello_world", "", False) == "main/my-app-hello-world"
    assert endpoint_key("dev", "my-app", "hello", "Custom_Label", False) == "dev/custom-label"


async def test_pruning_forgets_old_fired_ticks_but_keeps_pending_ones(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "db.sqlite")
    web = WebStore(store.connection)
    await web.record_tick(TickRow("fu-1", 10.0, "fc-a", "in-a", "fired"), 20.0)
    await web.record_tick(TickRow("fu-1", 20.0, "fc-b", "in-b", "pending"), 30.0)
    await web.record_tick(TickRow("fu-1", 30.0, "fc-c", "in-c", "fired"), 40.0)
    assert await web.prune_ticks(25.0) == 1
    assert [(t.tick_at, t.state) for t in await web.ticks("fu-1")] == [(20.0, "pending"), (30.0, "fired")]
    await store.close()
