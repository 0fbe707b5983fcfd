"""Which RPCs are administrative actions, and what the audit log records of each: the action, its target,
and names (never values). The chain (api/chain.py) calls `audit_rpc` once each of them has ended, with the
caller and how it ended."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

from google.protobuf.message import Message
from modal_proto import api_pb2

from berth.api.caller import Caller
from berth.errors import BerthError
from berth.services.apps import AppService
from berth.services.audit import AuditLog


@dataclass(frozen=True)
class Event:
    action: str
    target_type: str
    target_id: str
    environment: str = ""
    details: dict[str, str] = field(default_factory=dict)


_CREATING = {
    api_pb2.OBJECT_CREATION_TYPE_CREATE_IF_MISSING: "secret.create",
    api_pb2.OBJECT_CREATION_TYPE_CREATE_FAIL_IF_EXISTS: "secret.create",
    api_pb2.OBJECT_CREATION_TYPE_CREATE_OVERWRITE_IF_EXISTS: "secret.update",
}


def _secret_get_or_create(r: api_pb2.SecretGetOrCreateRequest) -> Event | None:
    action = _CREATING.get(r.object_creation_type)
    if action is None or not r.deployment_name:  # a lookup, or an app's anonymous secret: no change to audit
        return None
    keys = ",".join(sorted(r.env_dict))
    return Event(action, "secret", r.deployment_name, r.environment_name, {"keys": keys})


def _app_publish(r: api_pb2.AppPublishRequest) -> Event | None:
    if r.app_state != api_pb2.APP_STATE_DEPLOYED:  # `modal run` publishes its ephemeral app's layout too
        return None
    details = {"name": r.name, **({"tag": r.deployment_tag} if r.deployment_tag else {})}
    return Event("app.deploy", "app", r.app_id, "", details)


def _environment_update(r: api_pb2.EnvironmentUpdateRequest) -> Event:
    changed = {f.name: "set" for f, _ in r.ListFields() if f.name != "current_name"}
    return Event("environment.update", "environment", r.current_name, r.current_name, changed)


_EVENTS: dict[str, Callable[[Message], Event | None]] = {
    "AppPublish": _app_publish,
    "AppStop": lambda r: Event("app.stop", "app", r.app_id),
    "AppRollback": lambda r: Event("app.rollback", "app", r.app_id, "", {"version": str(r.version)}),
    "AppSetTags": lambda r: Event("app.set_tags", "app", r.app_id, "", {"tags": ",".join(sorted(r.tags))}),
    "ContainerStop": lambda r: Event("container.stop", "task", r.task_id),
    "SecretGetOrCreate": _secret_get_or_create,
    "SecretUpdate": lambda r: Event(
        "secret.update", "secret", r.secret_id, "", {"keys": ",".join(sorted(u.key for u in r.updates))}
    ),
    "SecretDelete": lambda r: Event("secret.delete", "secret", r.secret_id),
    "EnvironmentCreate": lambda r: Event("environment.create", "environment", r.name, r.name),
    "EnvironmentDelete": lambda r: Event("environment.delete", "environment", r.name, r.name),
    "EnvironmentUpdate": _environment_update,
    "VolumeDelete": lambda r: Event("volume.delete", "volume", r.volume_id, r.environment_name),
    "VolumeRename": lambda r: Event("volume.rename", "volume", r.volume_id, "", {"name": r.name}),
    "DictDelete": lambda r: Event("dict.delete", "dict", r.dict_id),
    "QueueDelete": lambda r: Event("queue.delete", "queue", r.queue_id),
}

AUDITED_RPCS = frozenset(_EVENTS)


def actor_of(caller: Caller) -> str:
    return caller.token_id or (caller.task_id or "anonymous")


async def audit_rpc(
    log: AuditLog, apps: AppService, caller: Caller, rpc: str, request: Message | None, status: str
) -> None:
    """Records one ended RPC if it is an administrative action ("ok", or the status code it failed with)."""
    describe = _EVENTS.get(rpc)
    if describe is None or request is None:
        return
    event = describe(request)
    if event is None:
        return
    environment = event.environment or caller.environment or ""
    if not environment and event.target_type == "app":
        with contextlib.suppress(BerthError):
            environment = (await apps.get(event.target_id)).environment
    await log.record(
        actor_of(caller), event.action, event.target_type, event.target_id, environment, status, event.details
    )
