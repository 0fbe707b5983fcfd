"""Proxies (`modal.Proxy.from_name`, a function's `proxy=`): a fixed source address for a function's outbound
traffic, one the operator owns and configures (`berth proxy create NAME --source-ip ADDR`); the worker that runs
the container rewrites its outgoing connections to that address. Stored as state objects of kind "proxy" whose
body is the address. Clients only look proxies up: creating one, or adding and removing its addresses, is the
operator's, as on Modal (where it is the dashboard's)."""

from __future__ import annotations

import ipaddress
import json

from modal_proto import api_pb2

from berth.clock import Clock
from berth.errors import InvalidArgument, NotFound
from berth.services.state_objects import FAIL_IF_EXISTS, NamedObjects, environment_of
from berth.store.ports import StateObjectStore
from berth.store.records import StateObject

OPERATOR_ONLY = (
    "Berth does not create or change proxies from the client: a proxy's source address must be one its workers own, "
    "so the operator creates it with `berth proxy create NAME --source-ip ADDR` (and `berth proxy delete NAME`)"
)


def _source_ip(obj: StateObject) -> str:
    return str(json.loads(obj.body or b"{}").get("source_ip", ""))


def check_source_ip(text: str) -> str:
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError as exc:
        raise InvalidArgument(f"A proxy's source address must be an IPv4 address, not {text!r}") from exc


class ProxyService:
    def __init__(self, store: StateObjectStore, clock: Clock) -> None:
        self.objects = NamedObjects(store, clock, "proxy", "Proxy", "pr", heartbeats=False)

    @staticmethod
    def _message(obj: StateObject) -> api_pb2.Proxy:
        return api_pb2.Proxy(
            name=obj.name or "",
            created_at=obj.created_at,
            environment_name=obj.environment,
            proxy_id=obj.object_id,
            proxy_ips=[api_pb2.ProxyIp(proxy_ip=_source_ip(obj), created_at=obj.created_at)],
        )

    async def create(self, name: str, environment: str, source_ip: str) -> api_pb2.Proxy:
        body = json.dumps({"source_ip": check_source_ip(source_ip)}).encode()
        obj, _ = await self.objects.resolve(name, environment, FAIL_IF_EXISTS, body=body)
        return self._message(obj)

    async def get(self, name: str, environment: str) -> api_pb2.Proxy:
        found = await self.objects.store.by_name("proxy", environment_of(environment), name)
        if found is None:
            raise NotFound(f"Proxy '{name}' not found in environment '{environment_of(environment)}'")
        return self._message(found)

    async def list(self, environment: str) -> list[api_pb2.Proxy]:
        named = await self.objects.named(environment, api_pb2.ListPagination(max_objects=1000))
        return [self._message(o) for o in named]

    async def delete(self, name: str, environment: str) -> None:
        proxy = await self.get(name, environment)
        await self.objects.delete(proxy.proxy_id)

    async def source_ip(self, proxy_id: str) -> str:
        """The address a container of a function with this proxy sends from."""
        return _source_ip(await self.objects.require(proxy_id))
