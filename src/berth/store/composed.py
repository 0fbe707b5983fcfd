"""A `StateStore` assembled from parts: the state objects on one backend (SQL), the contents of dicts and
queues on another (Redis). Each call goes to the part that owns it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from berth.store.ports import DictStore, QueueStore, StateObjectStore
from berth.store.records import StateObject


class _Droppable(Protocol):
    async def drop(self, object_id: str) -> None:
        """Removes every trace of the object's contents."""


class DictContents(DictStore, _Droppable, Protocol):
    pass


class QueueContents(QueueStore, _Droppable, Protocol):
    pass


class ComposedStateStore:
    def __init__(self, objects: StateObjectStore, dicts: DictContents, queues: QueueContents) -> None:
        self._objects = objects
        self._dicts = dicts
        self._queues = queues

    # objects
    async def put(self, obj: StateObject) -> None:
        await self._objects.put(obj)

    async def get(self, kind: str, object_id: str) -> StateObject | None:
        return await self._objects.get(kind, object_id)

    async def by_name(self, kind: str, environment: str, name: str) -> StateObject | None:
        return await self._objects.by_name(kind, environment, name)

    async def list_named(self, kind: str, environment: str, created_before: float, limit: int) -> list[StateObject]:
        return await self._objects.list_named(kind, environment, created_before, limit)

    async def set_body(self, object_id: str, body: bytes) -> None:
        await self._objects.set_body(object_id, body)

    async def set_body_if(self, object_id: str, expected: bytes | None, body: bytes) -> bool:
        return await self._objects.set_body_if(object_id, expected, body)

    async def create(self, obj: StateObject) -> bool:
        return await self._objects.create(obj)

    async def rename(self, object_id: str, name: str) -> None:
        await self._objects.rename(object_id, name)

    async def heartbeat(self, object_id: str, now: float) -> bool:
        return await self._objects.heartbeat(object_id, now)

    async def delete(self, object_id: str) -> None:
        """The two backends share no transaction. The object goes first, so no new request can find it;
        then its contents. A write that passed its existence check just before may still land after the
        drop and leave keys no one can reach (ids are never reused); they cost memory, not correctness."""
        await self._objects.delete(object_id)
        await self._dicts.drop(object_id)
        await self._queues.drop(object_id)

    async def expired_ephemeral(self, kind: str, before: float) -> list[StateObject]:
        return await self._objects.expired_ephemeral(kind, before)

    # dict entries
    async def dict_get(self, dict_id: str, key: bytes) -> bytes | None:
        return await self._dicts.dict_get(dict_id, key)

    async def dict_put(self, dict_id: str, entries: Sequence[tuple[bytes, bytes]], now: float, only_new: bool) -> bool:
        return await self._dicts.dict_put(dict_id, entries, now, only_new)

    async def dict_pop(self, dict_id: str, key: bytes) -> bytes | None:
        return await self._dicts.dict_pop(dict_id, key)

    async def dict_len(self, dict_id: str, cap: int) -> int:
        return await self._dicts.dict_len(dict_id, cap)

    async def dict_clear(self, dict_id: str) -> None:
        await self._dicts.dict_clear(dict_id)

    async def dict_entries(self, dict_id: str) -> list[tuple[bytes, bytes]]:
        return await self._dicts.dict_entries(dict_id)

    # queue items
    async def queue_len(self, queue_id: str, partition: bytes | None) -> int:
        return await self._queues.queue_len(queue_id, partition)

    async def queue_push(
        self, queue_id: str, partition: bytes, values: Sequence[bytes], now: float, max_items: int, ttl_s: float
    ) -> bool:
        return await self._queues.queue_push(queue_id, partition, values, now, max_items, ttl_s)

    async def queue_expire(self, queue_id: str, now: float) -> None:
        await self._queues.queue_expire(queue_id, now)

    async def queue_pop(self, queue_id: str, partition: bytes, n: int) -> list[bytes]:
        return await self._queues.queue_pop(queue_id, partition, n)

    async def queue_items_after(self, queue_id: str, partition: bytes, after: int, n: int) -> list[tuple[int, bytes]]:
        return await self._queues.queue_items_after(queue_id, partition, after, n)

    async def queue_clear(self, queue_id: str, partition: bytes | None) -> None:
        await self._queues.queue_clear(queue_id, partition)

    async def queue_stats(self, queue_id: str) -> tuple[int, int]:
        return await self._queues.queue_stats(queue_id)
