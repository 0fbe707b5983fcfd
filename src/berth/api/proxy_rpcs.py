"""Proxies: clients look them up (`modal.Proxy.from_name`) and list them; the operator creates and deletes them
(`berth proxy`), so the RPCs that would change one are refused by name."""

from __future__ import annotations

from google.protobuf import empty_pb2
from modal_proto import api_pb2

from berth.api.caller import Caller
from berth.api.context import Services
from berth.errors import Unimplemented
from berth.services.proxies import OPERATOR_ONLY


class ProxyRpcs:
    s: Services

    async def ProxyGet(self, req: api_pb2.ProxyGetRequest, caller: Caller) -> api_pb2.ProxyGetResponse:
        env = self.s.accounts.scope(req.environment_name, caller.environment)
        return api_pb2.ProxyGetResponse(proxy=await self.s.state.proxies.get(req.name, env))

    async def ProxyList(self, req: empty_pb2.Empty, caller: Caller) -> api_pb2.ProxyListResponse:
        return api_pb2.ProxyListResponse(proxies=await self.s.state.proxies.list(caller.environment or ""))

    async def ProxyGetOrCreate(
        self, req: api_pb2.ProxyGetOrCreateRequest, caller: Caller
    ) -> api_pb2.ProxyGetOrCreateResponse:
        if req.object_creation_type != api_pb2.OBJECT_CREATION_TYPE_UNSPECIFIED:
            raise Unimplemented(OPERATOR_ONLY)
        env = self.s.accounts.scope(req.environment_name, caller.environment)
        proxy = await self.s.state.proxies.get(req.deployment_name, env)
        return api_pb2.ProxyGetOrCreateResponse(proxy_id=proxy.proxy_id)

    async def ProxyCreate(self, req: api_pb2.ProxyCreateRequest, caller: Caller) -> api_pb2.ProxyCreateResponse:
        raise Unimplemented(OPERATOR_ONLY)

    async def ProxyDelete(self, req: api_pb2.ProxyDeleteRequest, caller: Caller) -> empty_pb2.Empty:
        raise Unimplemented(OPERATOR_ONLY)

    async def ProxyAddIp(self, req: api_pb2.ProxyAddIpRequest, caller: Caller) -> api_pb2.ProxyAddIpResponse:
        raise Unimplemented(OPERATOR_ONLY)

    async def ProxyRemoveIp(self, req: api_pb2.ProxyRemoveIpRequest, caller: Caller) -> empty_pb2.Empty:
        raise Unimplemented(OPERATOR_ONLY)
