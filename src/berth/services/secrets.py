"""Secrets: named or anonymous sets of environment variables, injected into containers. Values are
encrypted at rest with Fernet under a key the operator controls (BERTH_SECRETS_KEY, or a key file created
with mode 0600 at first start). No reply ever carries a value; only key names leave the server."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from modal_proto import api_pb2

from berth.clock import Clock
from berth.errors import FailedPrecondition, InvalidArgument, NotFound
from berth.services.state_objects import OVERWRITE, NamedObjects, creation_info, environment_of
from berth.store.ports import StateObjectStore
from berth.store.records import StateObject


def load_or_create_key(configured: str | None, key_path: Path) -> bytes:
    """The configured key if there is one, else the key file, created on first use (mode 0600)."""
    if configured:
        key = configured.strip().encode()
    elif key_path.exists():
        key = key_path.read_bytes().strip()
    else:
        key_path.parent.mkdir(parents=True, exist_ok=True)
        key = Fernet.generate_key()
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key)
    try:
        Fernet(key)
    except ValueError as exc:
        raise ValueError("The secrets key must be 32 url-safe base64-encoded bytes (a Fernet key)") from exc
    return key


def _check_env(env: dict[str, str]) -> dict[str, str]:
    for k, v in env.items():
        if not k or "=" in k or "\0" in k:
            raise InvalidArgument(f"Invalid secret key {k!r}: keys must be non-empty and contain no '=' or NUL")
        if "\0" in v:
            raise InvalidArgument(f"The value of secret key {k!r} contains a NUL byte")
    return env


class SecretService:
    def __init__(self, store: StateObjectStore, clock: Clock, key: bytes) -> None:
        self._store = store
        self._fernet = Fernet(key)
        self.objects = NamedObjects(store, clock, "secret", "Secret", "st", heartbeats=False)

    def _seal(self, env: dict[str, str]) -> bytes:
        return self._fernet.encrypt(json.dumps(env, sort_keys=True).encode())

    def _open(self, obj: StateObject) -> dict[str, str]:
        try:
            env: dict[str, str] = json.loads(self._fernet.decrypt(obj.body or b""))
        except InvalidToken as exc:
            raise FailedPrecondition(
                f"Secret {obj.object_id} cannot be decrypted: the server's secrets key is not the one it was"
                " stored with (check BERTH_SECRETS_KEY or the data directory's secrets.key)"
            ) from exc
        return env

    def _metadata(self, obj: StateObject) -> api_pb2.SecretMetadata:
        return api_pb2.SecretMetadata(
            name=obj.name or "",
            creation_info=creation_info(obj),
            keys=sorted(self._open(obj)),
            environment_name=obj.environment,
        )

    async def get_or_create(self, req: api_pb2.SecretGetOrCreateRequest) -> api_pb2.SecretGetOrCreateResponse:
        env = _check_env(dict(req.env_dict))
        obj, created = await self.objects.resolve(
            req.deployment_name,
            req.environment_name,
            req.object_creation_type,
            app_id=req.app_id,
            body=self._seal(env),
        )
        if not created and req.object_creation_type == OVERWRITE:
            obj.body = self._seal(env)
            await self._store.set_body(obj.object_id, obj.body)
        missing = [k for k in req.required_keys if k not in self._open(obj)]
        if missing:
            raise NotFound(f"Secret '{req.deployment_name}' is missing required keys: {', '.join(missing)}")
        return api_pb2.SecretGetOrCreateResponse(secret_id=obj.object_id, metadata=self._metadata(obj))

    async def info(self, secret_id: str) -> api_pb2.SecretGetInfoResponse:
        return api_pb2.SecretGetInfoResponse(metadata=self._metadata(await self.objects.require(secret_id)))

    async def update(self, req: api_pb2.SecretUpdateRequest) -> None:
        obj = await self.objects.require(req.secret_id)
        env = self._open(obj)
        env.update(_check_env({u.key: u.value for u in req.updates}))
        await self._store.set_body(obj.object_id, self._seal(env))

    async def list_secrets(self, req: api_pb2.SecretListRequest) -> api_pb2.SecretListResponse:
        items = [
            api_pb2.SecretListItem(
                label=o.name or "",
                created_at=o.created_at,
                environment_name=o.environment,
                secret_id=o.object_id,
                metadata=self._metadata(o),
            )
            for o in await self.objects.named(req.environment_name, req.pagination)
        ]
        return api_pb2.SecretListResponse(items=items, environment_name=environment_of(req.environment_name))

    async def delete(self, secret_id: str) -> None:
        await self.objects.delete(secret_id)

    async def env(self, secret_id: str) -> dict[str, str]:
        """The environment a container that uses this secret gets."""
        return self._open(await self.objects.require(secret_id))

    async def merged_env(self, secret_ids: Iterable[str]) -> dict[str, str]:
        """The environment of several secrets, later ones winning, as a container that uses them all gets it."""
        env: dict[str, str] = {}
        for secret_id in secret_ids:
            env.update(await self.env(secret_id))
        return env
