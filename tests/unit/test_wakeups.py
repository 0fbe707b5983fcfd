"""ReplicaNotifier's own logic on an in-memory bus: local waiters are woken before anything is published,
keys reach the other replicas, and a resync wakes every local waiter. tests/contract/test_wakeups.py runs
the same notifier on a real Redis."""

from __future__ import annotations

from collections.abc import Callable

from berth.services.notify import Notifier
from berth.services.wakeups import ReplicaNotifier, open_notifier


class Hub:
    """Buses of several replicas: a publication reaches every other bus (delivery is the test's to call)."""

    def __init__(self) -> None:
        self.buses: list[FakeBus] = []
        self.in_flight: list[tuple[FakeBus, str]] = []

    def deliver(self) -> None:
        flights, self.in_flight = self.in_flight, []
        for sender, key in flights:
            for bus in self.buses:
                if bus is not sender and bus.on_key is not None:
                    bus.on_key(key)


class FakeBus:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.on_key: Callable[[str], None] | None = None
        self.on_resync: Callable[[], None] | None = None
        self.closed = False
        hub.buses.append(self)

    async def start(self, on_key: Callable[[str], None], on_resync: Callable[[], None]) -> None:
        self.on_key, self.on_resync = on_key, on_resync
        on_resync()

    def publish(self, key: str) -> None:
        self.hub.in_flight.append((self, key))

    async def close(self) -> None:
        self.closed = True


async def test_local_waiters_wake_before_the_key_is_published_and_remote_ones_when_it_arrives() -> None:
    hub = Hub()
    a, b = ReplicaNotifier(FakeBus(hub)), ReplicaNotifier(FakeBus(hub))
    await a.start()
    await b.start()
    with a.listen("k") as local, b.listen("k") as remote:
        a.notify("k")
        assert await local.wait(0) and not await remote.wait(0)
        hub.deliver()
        assert await remote.wait(0)


async def test_a_resync_wakes_every_waiter_and_publishes_nothing() -> None:
    hub = Hub()
    bus = FakeBus(hub)
    notifier = ReplicaNotifier(bus)
    await notifier.start()
    with notifier.listen("a") as first, notifier.listen("b", "c") as second:
        assert bus.on_resync is not None
        bus.on_resync()
        assert await first.wait(0) and await second.wait(0)
    assert hub.in_flight == []


async def test_without_a_bus_the_notifier_is_the_in_process_one() -> None:
    notifier = await open_notifier(None)
    assert type(notifier) is Notifier
    await notifier.close()
    bus = FakeBus(Hub())
    shared = await open_notifier(bus)
    assert isinstance(shared, ReplicaNotifier) and bus.on_key is not None
    await shared.close()
    assert bus.closed
