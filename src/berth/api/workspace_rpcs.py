"""Workspace RPCs: who a token is (`modal token info`, `modal profile list`) and `modal workspace
member-tokens|service-users|proxy-tokens|settings|members`. Changes need a token nothing restricts; what
has no meaning on Berth (members, a settable default environment or builder version, per-environment proxy
tokens) is refused with the reason."""

from __future__ import annotations

from google.protobuf import empty_pb2
from modal_proto import api_pb2

from berth.api.caller import Caller
from berth.api.context import Services
from berth.errors import InvalidArgument, Unimplemented
from berth.services.workspace import NO_USERS, WORKSPACE_NAME

EMPTY = empty_pb2.Empty()
PROXY_TOKENS_EVERYWHERE = (
    "Berth does not support limiting or renaming proxy tokens: they are valid for every web endpoint with "
    "requires_proxy_auth in every environment"
)


class WorkspaceRpcs:
    s: Services

    async def _admin(self, caller: Caller, what: str) -> None:
        await self.s.roles.require_admin(caller.token_id, caller.environment, what)

    async def TokenInfoGet(self, req: api_pb2.TokenInfoGetRequest, caller: Caller) -> api_pb2.TokenInfoGetResponse:
        if caller.token_id is None:
            raise InvalidArgument("TokenInfoGet needs a client token")
        return await self.s.workspace.token_info(caller.token_id)

    async def TokenFlowCreate(
        self, req: api_pb2.TokenFlowCreateRequest, caller: Caller
    ) -> api_pb2.TokenFlowCreateResponse:
        flow = self.s.token_flows.create()
        return api_pb2.TokenFlowCreateResponse(
            token_flow_id=flow.flow_id,
            web_url=f"{self.s.settings.http_url}/token-flow/{flow.flow_id}",
            code=flow.code,
            wait_secret=flow.wait_secret,
        )

    async def TokenFlowWait(self, req: api_pb2.TokenFlowWaitRequest, caller: Caller) -> api_pb2.TokenFlowWaitResponse:
        token = await self.s.token_flows.wait(req.token_flow_id, req.wait_secret, req.timeout)
        if token is None:
            return api_pb2.TokenFlowWaitResponse(timeout=True)
        return api_pb2.TokenFlowWaitResponse(
            token_id=token[0], token_secret=token[1], workspace_username=WORKSPACE_NAME
        )

    async def WorkspaceNameLookup(self, req: empty_pb2.Empty, caller: Caller) -> api_pb2.WorkspaceNameLookupResponse:
        return api_pb2.WorkspaceNameLookupResponse(workspace_name=WORKSPACE_NAME, username=WORKSPACE_NAME)

    async def WorkspaceSettings(self, req: empty_pb2.Empty, caller: Caller) -> api_pb2.WorkspaceSettingsResponse:
        return self.s.workspace.settings()

    async def WorkspaceSetDefaultEnvironment(
        self, req: api_pb2.WorkspaceSetDefaultEnvironmentRequest, caller: Caller
    ) -> empty_pb2.Empty:
        raise Unimplemented(
            "Berth does not support changing the default environment: it is always 'main'; choose another per "
            "client with MODAL_ENVIRONMENT or `modal config set-environment`"
        )

    async def WorkspaceSetImageBuilderVersion(
        self, req: api_pb2.WorkspaceSetImageBuilderVersionRequest, caller: Caller
    ) -> api_pb2.WorkspaceSetImageBuilderVersionResponse:
        raise Unimplemented(
            f"Berth does not support choosing the image builder version: it builds with {self.s.image_builder_version}"
        )

    async def WorkspaceMembersList(self, req: empty_pb2.Empty, caller: Caller) -> api_pb2.WorkspaceMembersListResponse:
        raise Unimplemented(NO_USERS)

    async def TokensList(self, req: empty_pb2.Empty, caller: Caller) -> api_pb2.TokensListResponse:
        return await self.s.workspace.member_tokens()

    async def TokenDisable(self, req: api_pb2.TokenDisableRequest, caller: Caller) -> empty_pb2.Empty:
        await self._admin(caller, "disable tokens")
        if caller.token_id in req.token_ids:
            raise InvalidArgument("A token cannot disable itself")
        await self.s.workspace.set_disabled(list(req.token_ids), True)
        return EMPTY

    async def TokenEnable(self, req: api_pb2.TokenEnableRequest, caller: Caller) -> empty_pb2.Empty:
        await self._admin(caller, "enable tokens")
        await self.s.workspace.set_disabled(list(req.token_ids), False)
        return EMPTY

    async def TokenDelete(self, req: api_pb2.TokenDeleteRequest, caller: Caller) -> empty_pb2.Empty:
        await self._admin(caller, "delete tokens")
        await self.s.workspace.delete_token(req.token_id)
        return EMPTY

    async def ServiceUserCreate(
        self, req: api_pb2.ServiceUserCreateRequest, caller: Caller
    ) -> api_pb2.ServiceUserCreateResponse:
        await self._admin(caller, "create service users")
        return await self.s.workspace.create_service_user(req)

    async def ServiceUserList(self, req: empty_pb2.Empty, caller: Caller) -> api_pb2.ServiceUserListResponse:
        return await self.s.workspace.service_users(await self.s.accounts.names())

    async def ServiceUserInfo(
        self, req: api_pb2.ServiceUserInfoRequest, caller: Caller
    ) -> api_pb2.ServiceUserInfoResponse:
        return await self.s.workspace.service_user(req.service_user_name, await self.s.accounts.names())

    async def ServiceUserDelete(self, req: api_pb2.ServiceUserDeleteRequest, caller: Caller) -> empty_pb2.Empty:
        await self._admin(caller, "delete service users")
        await self.s.workspace.delete_service_user(req)
        return EMPTY

    async def WebhookTokenCreate(
        self, req: api_pb2.WebhookTokenCreateRequest, caller: Caller
    ) -> api_pb2.TokenCreateResponse:
        await self._admin(caller, "create proxy tokens")
        return await self.s.workspace.create_proxy_token(req)

    async def WebhookTokenList(self, req: empty_pb2.Empty, caller: Caller) -> api_pb2.WebhookTokenListResponse:
        return await self.s.workspace.proxy_tokens()

    async def WebhookTokenListForEnvironment(
        self, req: api_pb2.WebhookTokenListForEnvironmentRequest, caller: Caller
    ) -> api_pb2.WebhookTokenListResponse:
        await self.s.accounts.require_environment(req.environment_name)
        return await self.s.workspace.proxy_tokens()  # every proxy token is valid in every environment

    async def WebhookTokenDelete(self, req: api_pb2.TokenDeleteRequest, caller: Caller) -> empty_pb2.Empty:
        await self._admin(caller, "delete proxy tokens")
        await self.s.workspace.delete_proxy_token(req.token_id)
        return EMPTY

    async def WebhookTokenUpdate(self, req: api_pb2.WebhookTokenUpdateRequest, caller: Caller) -> api_pb2.WebhookToken:
        raise Unimplemented(PROXY_TOKENS_EVERYWHERE)

    async def WebhookTokenEnvironmentAdd(
        self, req: api_pb2.WebhookTokenEnvironmentAddRequest, caller: Caller
    ) -> empty_pb2.Empty:
        raise Unimplemented(PROXY_TOKENS_EVERYWHERE)

    async def WebhookTokenEnvironmentRemove(
        self, req: api_pb2.WebhookTokenEnvironmentRemoveRequest, caller: Caller
    ) -> empty_pb2.Empty:
        raise Unimplemented(PROXY_TOKENS_EVERYWHERE)
