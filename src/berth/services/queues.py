"""Queues: named or ephemeral FIFO queues of pickled values, split into partitions. Gets long-poll up to
their timeout; a put wakes the waiters of its partition. A full partition answers RESOURCE_EXHAUSTED, which
the client retries with backoff until its own timeout."""

from __future__ import annotations

from typing import Protocol

from modal_proto import api_pb2

from berth.clock import Clock
from berth.errors import InvalidArgument, ResourceExhausted
from berth.services.notify import Notifier
from berth.services.state_objects import NamedObjects, creation_info
from berth.store.ports import QueueStore, StateObjectStore
from berth.store.records import StateObject

# Modal's documented limits, mirrored for error parity.
MAX_ITEM_BYTES = 1024 * 1024
MAX_PARTITION_ITEMS = 5000
MAX_PARTITION_KEY_BYTES = 64
# A partition is cleared this long after its last put, unless the put asks for less (or more, up to a week).
DEFAULT_PARTITION_TTL_S = 24 * 3600
MAX_PARTITION_TTL_S = 7 * 24 * 3600
# A get long-polls at most this long; the client loops for longer timeouts.
MAX_POLL_S = 55.0
NEXT_ITEMS_BATCH = 100


def _metadata(obj: StateObject) -> api_pb2.QueueMetadata:
    return api_pb2.QueueMetadata(name=obj.name or "", creation_info=creation_info(obj))


def queue_key(queue_id: str, partition: bytes) -> str:
    return f"queue:{queue_id}:{partition.hex()}"


def _check_partition(partition: bytes) -> bytes:
    if len(partition) > MAX_PARTITION_KEY_BYTES:
        raise InvalidArgument(f"Queue partition key must be at most {MAX_PARTITION_KEY_BYTES} bytes")
    return partition


class QueueObjects(StateObjectStore, QueueStore, Protocol):
    """The queue objects and their contents."""


class QueueService:
    def __init__(self, store: QueueObjects, notifier: Notifier, clock: Clock) -> None:
        self._store = store
        self._notifier = notifier
        self._clock = clock
        self.objects = NamedObjects(store, clock, "queue", "Queue", "qu")

    async def _live(self, queue_id: str) -> None:
        """The queue exists; its expired partitions are cleared before anyone looks at it."""
        await self.objects.require(queue_id)
        await self._store.queue_expire(queue_id, self._clock.now())

    async def get_or_create(self, req: api_pb2.QueueGetOrCreateRequest) -> api_pb2.QueueGetOrCreateResponse:
        obj, _ = await self.objects.resolve(req.deployment_name, req.environment_name, req.object_creation_type)
        return api_pb2.QueueGetOrCreateResponse(queue_id=obj.object_id, metadata=_metadata(obj))

    async def get_by_id(self, queue_id: str) -> api_pb2.QueueGetByIdResponse:
        obj = await self.objects.require(queue_id)
        return api_pb2.QueueGetByIdResponse(queue_id=queue_id, metadata=_metadata(obj))

    async def list_queues(self, req: api_pb2.QueueListRequest) -> api_pb2.QueueListResponse:
        infos = []
        for o in await self.objects.named(req.environment_name, req.pagination):
            await self._store.queue_expire(o.object_id, self._clock.now())
            partitions, total = await self._store.queue_stats(o.object_id)
            if req.total_size_limit:
                total = min(total, req.total_size_limit)
            infos.append(
                api_pb2.QueueListResponse.QueueInfo(
                    name=o.name or "",
                    created_at=o.created_at,
                    num_partitions=partitions,
                    total_size=total,
                    queue_id=o.object_id,
                    metadata=_metadata(o),
                )
            )
        return api_pb2.QueueListResponse(queues=infos, environment_name=req.environment_name)

    async def put(self, req: api_pb2.QueuePutRequest) -> None:
        await self._live(req.queue_id)
        partition = _check_partition(req.partition_key)
        values = list(req.values)
        for v in values:
            if len(v) > MAX_ITEM_BYTES:
                raise InvalidArgument(f"Queue item of {len(v)} bytes exceeds the limit of {MAX_ITEM_BYTES} bytes")
        if len(values) > MAX_PARTITION_ITEMS:
            raise InvalidArgument(f"Cannot put {len(values)} items at once; a partition holds {MAX_PARTITION_ITEMS}")
        ttl = min(req.partition_ttl_seconds or DEFAULT_PARTITION_TTL_S, MAX_PARTITION_TTL_S)
        now = self._clock.now()
        if not await self._store.queue_push(req.queue_id, partition, values, now, MAX_PARTITION_ITEMS, ttl):
            raise ResourceExhausted(f"Queue {req.queue_id} is full (at most {MAX_PARTITION_ITEMS} items per partition)")
        self._notifier.notify(queue_key(req.queue_id, partition))

    async def get(self, req: api_pb2.QueueGetRequest) -> list[bytes]:
        partition = _check_partition(req.partition_key)
        n = max(1, req.n_values)
        deadline = self._clock.monotonic() + min(max(req.timeout, 0.0), MAX_POLL_S)
        while True:
            await self._live(req.queue_id)
            with self._notifier.listen(queue_key(req.queue_id, partition)) as waiter:
                values = await self._store.queue_pop(req.queue_id, partition, n)
                remaining = deadline - self._clock.monotonic()
                if values or remaining <= 0:
                    return values
                await waiter.wait(remaining)

    async def next_items(self, req: api_pb2.QueueNextItemsRequest) -> list[api_pb2.QueueItem]:
        partition = _check_partition(req.partition_key)
        try:
            after = int(req.last_entry_id or 0)
        except ValueError as exc:
            raise InvalidArgument(f"Invalid last_entry_id {req.last_entry_id!r}") from exc
        deadline = self._clock.monotonic() + min(max(req.item_poll_timeout, 0.0), MAX_POLL_S)
        while True:
            await self._live(req.queue_id)
            with self._notifier.listen(queue_key(req.queue_id, partition)) as waiter:
                rows = await self._store.queue_items_after(req.queue_id, partition, after, NEXT_ITEMS_BATCH)
                remaining = deadline - self._clock.monotonic()
                if rows or remaining <= 0:
                    return [api_pb2.QueueItem(value=v, entry_id=str(seq)) for seq, v in rows]
                await waiter.wait(remaining)

    async def length(self, req: api_pb2.QueueLenRequest) -> int:
        await self._live(req.queue_id)
        partition = None if req.total else _check_partition(req.partition_key)
        return await self._store.queue_len(req.queue_id, partition)

    async def clear(self, req: api_pb2.QueueClearRequest) -> None:
        await self.objects.require(req.queue_id)
        partition = None if req.all_partitions else _check_partition(req.partition_key)
        await self._store.queue_clear(req.queue_id, partition)
