"""Naming and lifetime rules shared by volumes, secrets, dicts and queues: lookup by (environment, name),
the object creation types of the Modal API, listing, renaming, and ephemeral objects that live while
their client heartbeats."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from modal_proto import api_pb2

from berth.clock import Clock
from berth.errors import AlreadyExists, InvalidArgument, NotFound
from berth.ids import new_id
from berth.store.ports import StateObjectStore
from berth.store.records import StateObject

# Clients heartbeat ephemeral objects every 300 s; one missed beat is tolerated, several are not.
EPHEMERAL_TTL_S = 1200.0
_NAME_RE = re.compile(r"^[a-zA-Z0-9-_.]{1,64}$")

CREATE = api_pb2.OBJECT_CREATION_TYPE_CREATE_IF_MISSING
FAIL_IF_EXISTS = api_pb2.OBJECT_CREATION_TYPE_CREATE_FAIL_IF_EXISTS
OVERWRITE = api_pb2.OBJECT_CREATION_TYPE_CREATE_OVERWRITE_IF_EXISTS
OWNED_BY_APP = api_pb2.OBJECT_CREATION_TYPE_ANONYMOUS_OWNED_BY_APP
EPHEMERAL = api_pb2.OBJECT_CREATION_TYPE_EPHEMERAL


def environment_of(name: str) -> str:
    return name or "main"


def creation_info(obj: StateObject) -> api_pb2.CreationInfo:
    return api_pb2.CreationInfo(created_at=obj.created_at, created_by="berth")


class NamedObjects:
    """One kind of state object (e.g. 'dict', labelled 'Dict', ids 'di-…')."""

    def __init__(
        self, store: StateObjectStore, clock: Clock, kind: str, label: str, prefix: str, heartbeats: bool = True
    ) -> None:
        self.store = store
        # Kinds whose clients do not heartbeat (secrets) keep their anonymous objects.
        self._heartbeats = heartbeats
        # Called after an object is deleted or reaped, e.g. to remove a volume's files.
        self.on_delete: Callable[[StateObject], Awaitable[None]] | None = None
        self._clock = clock
        self.kind = kind
        self.label = label
        self._prefix = prefix

    def _check_name(self, name: str) -> None:
        if not _NAME_RE.match(name):
            raise InvalidArgument(
                f"Invalid {self.label} name: {name!r}. Names may contain only alphanumeric characters, dashes,"
                " periods and underscores, and must be at most 64 characters long."
            )

    async def resolve(
        self,
        name: str,
        environment: str,
        creation_type: int,
        *,
        app_id: str = "",
        version: int = 0,
        body: bytes | None = None,
    ) -> tuple[StateObject, bool]:
        """The object a *GetOrCreate request names, creating it where its creation type says so.
        Returns (object, created)."""
        env = environment_of(environment)
        anonymous = creation_type in (EPHEMERAL, OWNED_BY_APP)
        if anonymous and name:
            raise InvalidArgument(f"An anonymous {self.label} cannot have a name ({name!r})")
        if not anonymous and not name:
            raise InvalidArgument(f"{self.label} lookups need a name")
        if anonymous:
            await self.reap_expired()
            return await self._create(
                None,
                env,
                ephemeral=self._heartbeats and creation_type == EPHEMERAL,
                app_id=app_id,
                version=version,
                body=body,
            ), True
        self._check_name(name)
        found = await self.store.by_name(self.kind, env, name)
        if found is not None:
            if creation_type == FAIL_IF_EXISTS:
                raise AlreadyExists(f"{self.label} '{name}' already exists in environment '{env}'")
            return found, False
        if creation_type not in (CREATE, FAIL_IF_EXISTS, OVERWRITE):
            raise NotFound(f"{self.label} '{name}' not found in environment '{env}'")
        return await self._create(name, env, ephemeral=False, app_id="", version=version, body=body), True

    async def _create(
        self, name: str | None, env: str, *, ephemeral: bool, app_id: str, version: int, body: bytes | None
    ) -> StateObject:
        now = self._clock.now()
        obj = StateObject(
            new_id(self._prefix), self.kind, name, env, ephemeral, app_id or None, version, body, now, now
        )
        await self.store.put(obj)
        return obj

    async def require(self, object_id: str) -> StateObject:
        obj = await self.store.get(self.kind, object_id)
        if obj is None:
            raise NotFound(f"{self.label} {object_id} not found")
        return obj

    async def named(self, environment: str, pagination: api_pb2.ListPagination) -> list[StateObject]:
        before = pagination.created_before or float("inf")
        limit = pagination.max_objects or 100
        return await self.store.list_named(self.kind, environment_of(environment), before, min(limit, 1000))

    async def heartbeat(self, object_id: str) -> None:
        if not await self.store.heartbeat(object_id, self._clock.now()):
            raise NotFound(f"{self.label} {object_id} not found")

    async def rename(self, object_id: str, new_name: str) -> StateObject:
        obj = await self.require(object_id)
        self._check_name(new_name)
        if obj.name is None:
            raise InvalidArgument(f"Anonymous {self.label} {object_id} cannot be renamed")
        if await self.store.by_name(self.kind, obj.environment, new_name) is not None:
            raise AlreadyExists(f"{self.label} '{new_name}' already exists in environment '{obj.environment}'")
        await self.store.rename(object_id, new_name)
        obj.name = new_name
        return obj

    async def delete(self, object_id: str) -> StateObject:
        obj = await self.require(object_id)
        await self.store.delete(object_id)
        if self.on_delete is not None:
            await self.on_delete(obj)
        return obj

    async def reap_expired(self) -> list[StateObject]:
        """Deletes ephemeral objects whose client stopped heartbeating; returns them."""
        expired = await self.store.expired_ephemeral(self.kind, self._clock.now() - EPHEMERAL_TTL_S)
        for obj in expired:
            await self.store.delete(obj.object_id)
            if self.on_delete is not None:
                await self.on_delete(obj)
        return expired
