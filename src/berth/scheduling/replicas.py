"""This server among the replicas that share one database.

Each replica owns the containers it started: their workers are linked to it, and their calls come back
to it. It says it is alive by beating in the store every BEAT_S. Whoever notices a replica that has not
beaten for DEAD_AFTER_S (any replica, on its own beat) ends that replica's tasks and puts the inputs they
held back in the queue, without counting an attempt, as for a lost worker. A restarted replica joins under
its earlier name, which forgets the earlier incarnation at once, so its inputs go back without waiting.

A replica that finds itself declared dead (it could not beat for too long) has had its inputs handed to
others: it stops its containers, whose late outputs the store refuses anyway (finish is conditional on
the holder), and joins again."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Protocol

from berth.clock import Clock
from berth.errors import disk_full
from berth.ids import new_id
from berth.scheduling.tasks import TaskManager
from berth.services.inputs import SCHEDULER_KEY, function_key
from berth.services.notify import Notifier
from berth.store.ports import ReplicaStore
from berth.store.records import ReplicaRecord

log = logging.getLogger("berth.replicas")

BEAT_S = 2.0
DEAD_AFTER_S = 15.0


class _Capacity(Protocol):
    def free_slots(self) -> int: ...


class Replicas:
    def __init__(
        self,
        store: ReplicaStore,
        tasks: TaskManager,
        capacity: _Capacity,
        notifier: Notifier,
        clock: Clock,
        name: str,
        beat_s: float = BEAT_S,
        dead_after_s: float = DEAD_AFTER_S,
    ) -> None:
        self._store = store
        self._tasks = tasks
        self._capacity = capacity
        self._notifier = notifier
        self._clock = clock
        self.name = name
        self.replica_id = new_id("rp")
        self._beat_s = beat_s
        self._dead_after_s = dead_after_s
        self._others_free = 0  # free container slots the other live replicas reported at their last beat
        self._others_alive = False
        # Since when this replica's beats have gone through without a break. It declares others dead only
        # after DEAD_AFTER_S of its own good beats: when the database comes back after an outage, every
        # replica's last beat is old, and the first one back must not take the others' containers away.
        self._healthy_since: float | None = None

    def _info(self) -> bytes:
        return json.dumps({"free_slots": self._capacity.free_slots()}).encode()

    async def join(self) -> None:
        now = self._clock.now()
        await self._store.join_replica(ReplicaRecord(self.replica_id, self.name, now, now, self._info()))
        log.info("replica %s (%s) registered", self.name, self.replica_id)
        await self._read_others(now)

    async def leave(self) -> None:
        await self._store.leave_replica(self.replica_id)

    async def run(self) -> None:
        while True:
            try:
                await self.beat()
            except Exception as exc:
                self._healthy_since = None
                if disk_full(exc) is not None:
                    log.warning("replica beat failed: the data disk is full")
                else:
                    log.exception("replica beat failed")
            await asyncio.sleep(self._beat_s)

    async def beat(self) -> None:
        now = self._clock.now()
        if not await self._store.replica_beat(self.replica_id, now, self._info()):
            await self._declared_dead()
        if self._healthy_since is None:
            self._healthy_since = now
        if now - self._healthy_since >= self._dead_after_s:
            await self.release_orphans()
        await self._read_others(now)

    async def release_orphans(self) -> None:
        """Hand back what dead replicas' containers held (and, after a restart, what this one's earlier
        incarnation's did)."""
        now = self._clock.now()
        functions = await self._store.release_orphans(now - self._dead_after_s, now)
        for function_id in functions:
            log.info("requeued the inputs of %s held by containers of a replica that is gone", function_id)
            self._notifier.notify(function_key(function_id))
        if functions:
            self._notifier.notify(SCHEDULER_KEY)

    def others_alive(self) -> bool:
        """Another replica beat within the window (as of this one's last beat)."""
        return self._others_alive

    def others_can_place(self) -> bool:
        """Another live replica has room for containers (so a function this one cannot place is not stuck)."""
        return self._others_free > 0

    async def _read_others(self, now: float) -> None:
        live = await self._store.live_replicas(now - self._dead_after_s)
        others = [r for r in live if r.replica_id != self.replica_id]
        self._others_alive = bool(others)
        self._others_free = sum(int(json.loads(r.info or b"{}").get("free_slots", 0)) for r in others)

    async def _declared_dead(self) -> None:
        log.error(
            "replica %s was presumed dead by the others (no beat for %gs): what its containers held runs "
            "elsewhere; stopping them and joining again",
            self.name,
            self._dead_after_s,
        )
        await self._tasks.abandon_all("its server replica was presumed dead")
        await self.join()
        self._healthy_since = None
