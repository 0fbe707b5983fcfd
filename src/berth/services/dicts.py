"""Dicts: named or ephemeral maps from pickled keys to pickled values. Key identity is the exact pickle
bytes; the server never unpickles anything."""

from __future__ import annotations

from typing import Protocol

from modal_proto import api_pb2

from berth.clock import Clock
from berth.errors import InvalidArgument
from berth.services.state_objects import NamedObjects, creation_info
from berth.store.ports import DictStore, StateObjectStore
from berth.store.records import StateObject

MAX_KEY_BYTES = 1024 * 1024
MAX_VALUE_BYTES = 32 * 1024 * 1024
# DictLen is documented to count at most this many entries.
LEN_CAP = 100_000


def _metadata(obj: StateObject) -> api_pb2.DictMetadata:
    return api_pb2.DictMetadata(name=obj.name or "", creation_info=creation_info(obj))


def _check_entries(entries: list[api_pb2.DictEntry]) -> list[tuple[bytes, bytes]]:
    for e in entries:
        if len(e.key) > MAX_KEY_BYTES:
            raise InvalidArgument(f"Dict key of {len(e.key)} bytes exceeds the limit of {MAX_KEY_BYTES} bytes")
        if len(e.value) > MAX_VALUE_BYTES:
            raise InvalidArgument(
                f"Dict value of {len(e.value)} bytes exceeds the limit of {MAX_VALUE_BYTES // (1024 * 1024)} MiB"
            )
    return [(e.key, e.value) for e in entries]


class DictObjects(StateObjectStore, DictStore, Protocol):
    """The dict objects and their contents."""


class DictService:
    def __init__(self, store: DictObjects, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self.objects = NamedObjects(store, clock, "dict", "Dict", "di")

    async def get_or_create(self, req: api_pb2.DictGetOrCreateRequest) -> api_pb2.DictGetOrCreateResponse:
        initial = _check_entries(list(req.data))
        obj, created = await self.objects.resolve(req.deployment_name, req.environment_name, req.object_creation_type)
        if created and initial:
            await self._store.dict_put(obj.object_id, initial, self._clock.now(), only_new=False)
        return api_pb2.DictGetOrCreateResponse(dict_id=obj.object_id, metadata=_metadata(obj))

    async def get_by_id(self, dict_id: str) -> api_pb2.DictGetByIdResponse:
        obj = await self.objects.require(dict_id)
        return api_pb2.DictGetByIdResponse(dict_id=dict_id, metadata=_metadata(obj))

    async def list_dicts(self, req: api_pb2.DictListRequest) -> api_pb2.DictListResponse:
        objs = await self.objects.named(req.environment_name, req.pagination)
        infos = [
            api_pb2.DictListResponse.DictInfo(
                name=o.name or "", created_at=o.created_at, dict_id=o.object_id, metadata=_metadata(o)
            )
            for o in objs
        ]
        return api_pb2.DictListResponse(dicts=infos, environment_name=req.environment_name)

    async def get(self, dict_id: str, key: bytes) -> bytes | None:
        await self.objects.require(dict_id)
        return await self._store.dict_get(dict_id, key)

    async def update(self, req: api_pb2.DictUpdateRequest) -> bool:
        await self.objects.require(req.dict_id)
        entries = _check_entries(list(req.updates))
        return await self._store.dict_put(req.dict_id, entries, self._clock.now(), only_new=req.if_not_exists)

    async def pop(self, dict_id: str, key: bytes) -> bytes | None:
        await self.objects.require(dict_id)
        return await self._store.dict_pop(dict_id, key)

    async def length(self, dict_id: str) -> int:
        await self.objects.require(dict_id)
        return await self._store.dict_len(dict_id, LEN_CAP)

    async def clear(self, dict_id: str) -> None:
        await self.objects.require(dict_id)
        await self._store.dict_clear(dict_id)

    async def contents(self, dict_id: str) -> list[tuple[bytes, bytes]]:
        await self.objects.require(dict_id)
        return await self._store.dict_entries(dict_id)
