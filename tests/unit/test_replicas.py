"""Replicas on one database (scheduling/replicas.py), with a fake clock: a replica that stops beating has its
containers' inputs handed back by another, and a replica that finds itself presumed dead stops its
containers and joins again. The store is the real SQLite one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from berth.scheduling.replicas import DEAD_AFTER_S, Replicas
from berth.services.inputs import function_key
from berth.services.notify import Notifier
from berth.store.records import CallRecord, TaskRecord
from berth.store.sqlite import SqliteStore


@dataclass
class FakeClock:
    t: float = 1000.0

    def now(self) -> float:
        return self.t

    def monotonic(self) -> float:
        return self.t


@dataclass
class Containers:
    """What Replicas asks of the task registry and the worker: free slots, and stopping everything."""

    slots: int = 4
    abandoned: list[str] = field(default_factory=list)

    def free_slots(self) -> int:
        return self.slots

    async def abandon_all(self, reason: str) -> None:
        self.abandoned.append(reason)


class RecordingNotifier(Notifier):
    def __init__(self) -> None:
        super().__init__()
        self.keys: list[str] = []

    def notify(self, key: str, at_most: int | None = None) -> None:
        self.keys.append(key)
        super().notify(key, at_most)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = await SqliteStore.open(tmp_path / "db.sqlite")
    yield s
    await s.close()


def _replica(store: SqliteStore, name: str, clock: FakeClock, containers: Containers, notifier: Notifier) -> Replicas:
    tasks: Any = containers
    return Replicas(store, tasks, containers, notifier, clock, name)


async def test_a_silent_replicas_inputs_go_back_and_it_no_longer_counts_as_room(store: SqliteStore) -> None:
    clock, notifier = FakeClock(), RecordingNotifier()
    a = _replica(store, "a", clock, Containers(slots=3), Notifier())
    b = _replica(store, "b", clock, Containers(slots=0), notifier)
    await a.join()
    await b.join()
    await store.create_call(CallRecord("fc-1", "fu-1", 2, 1, False, 0, False, 0.0))
    await store.add_inputs("fc-1", "fu-1", [(f"in-{i}", i, "", b"p") for i in range(3)], now=clock.now())
    await store.put_task(TaskRecord("ta-a", "fu-1", "ap-1", "running", "h", clock.now(), replica_id=a.replica_id))
    await store.claim_inputs("fu-1", "ta-a", 3, clock.now(), None)

    await b.beat()
    assert b.others_can_place()  # a is alive and has room
    assert len(await store.inputs_held_by("ta-a")) == 3

    clock.t += DEAD_AFTER_S + 1  # a stops beating; b keeps on
    await b.beat()
    assert await store.inputs_held_by("ta-a") == []
    assert await store.queued_counts(clock.now()) == {"fu-1": 3}
    assert function_key("fu-1") in notifier.keys
    assert not b.others_can_place()
    task = await store.get_task("ta-a")
    assert task is not None and task.state == "lost"


async def test_a_replica_presumed_dead_stops_its_containers_and_joins_again(store: SqliteStore) -> None:
    clock = FakeClock()
    a_containers = Containers()
    a = _replica(store, "a", clock, a_containers, Notifier())
    b = _replica(store, "b", clock, Containers(), Notifier())
    await a.join()
    await b.join()
    await b.beat()
    clock.t += DEAD_AFTER_S + 1
    await b.beat()  # forgets a
    assert [r.name for r in await store.live_replicas(0.0)] == ["b"]

    await a.beat()
    assert a_containers.abandoned == ["its server replica was presumed dead"]
    assert sorted(r.name for r in await store.live_replicas(0.0)) == ["a", "b"]


async def test_a_restart_under_the_same_name_hands_back_the_earlier_incarnations_inputs_at_once(
    store: SqliteStore,
) -> None:
    clock = FakeClock()
    before = _replica(store, "a", clock, Containers(), Notifier())
    await before.join()
    await store.create_call(CallRecord("fc-1", "fu-1", 2, 1, False, 0, False, 0.0))
    await store.add_inputs("fc-1", "fu-1", [("in-0", 0, "", b"p")], now=clock.now())
    await store.put_task(
        TaskRecord("ta-old", "fu-1", "ap-1", "running", "h", clock.now(), replica_id=before.replica_id)
    )
    await store.claim_inputs("fu-1", "ta-old", 1, clock.now(), None)

    clock.t += 1  # far within DEAD_AFTER_S: only the name says the earlier one is gone
    after = _replica(store, "a", clock, Containers(), Notifier())
    await after.join()
    await after.release_orphans()
    assert await store.queued_counts(clock.now()) == {"fu-1": 1}


async def test_after_a_database_outage_the_first_replica_back_does_not_declare_the_others_dead(
    store: SqliteStore,
) -> None:
    clock = FakeClock()
    a = _replica(store, "a", clock, Containers(), Notifier())
    b_containers = Containers()
    b = _replica(store, "b", clock, b_containers, Notifier())
    await a.join()
    await b.join()
    await a.beat()
    clock.t += DEAD_AFTER_S + 5  # nobody could beat meanwhile
    a._healthy_since = None  # its beats failed during the outage (run() resets it on an error)
    await a.beat()  # a is back first: b's beat is old, but a has not been healthy long enough to judge
    assert sorted(r.name for r in await store.live_replicas(0.0)) == ["a", "b"]
    await b.beat()
    assert b_containers.abandoned == []
