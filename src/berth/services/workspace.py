"""The workspace as the stock client sees it (`modal token info`, `modal profile list`, `modal workspace ...`).

A Berth server is one workspace, named "berth". Its principals are tokens: `berth token create` makes member
tokens (`modal workspace member-tokens`), `modal workspace service-users create` makes named tokens that have
no access until given a role, and the web front door's proxy-auth tokens are `modal workspace proxy-tokens`.
Berth has no human users, so what is about users (members, a per-user default environment) is refused with
the reason."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp
from modal_proto import api_pb2

from berth.clock import Clock
from berth.errors import AlreadyExists, InvalidArgument, NotFound, Unimplemented
from berth.ids import new_id, new_secret, secret_digest
from berth.services.accounts import DEFAULT_ENVIRONMENT
from berth.services.roles import ROLE_ENUMS, EnvironmentRoles
from berth.services.web import create_token
from berth.store.ports import EndpointStore, TokenStore
from berth.store.records import TokenRecord

WORKSPACE_NAME = "berth"
WORKSPACE_ID = "ac-berth"
NO_USERS = (
    "Berth does not have workspace members: its principals are tokens (`berth token create`, `modal workspace "
    "member-tokens list`, `modal workspace service-users list`)"
)


def _timestamp(seconds: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


class WorkspaceService:
    def __init__(
        self, tokens: TokenStore, web_tokens: EndpointStore, roles: EnvironmentRoles, clock: Clock, builder: str
    ) -> None:
        self._tokens = tokens
        self._web_tokens = web_tokens
        self._roles = roles
        self._clock = clock
        self._builder = builder

    async def _live(self) -> list[TokenRecord]:
        return [t for t in await self._tokens.token_records() if t.revoked_at is None]

    async def _record(self, token_id: str) -> TokenRecord:
        found = next((t for t in await self._live() if t.token_id == token_id), None)
        if found is None:
            raise NotFound(f"Token {token_id} not found")
        return found

    async def token_info(self, token_id: str) -> api_pb2.TokenInfoGetResponse:
        token = await self._record(token_id)
        resp = api_pb2.TokenInfoGetResponse(
            token_id=token_id, workspace_name=WORKSPACE_NAME, workspace_id=WORKSPACE_ID, token_name=token.name or ""
        )
        resp.created_at.CopyFrom(_timestamp(token.created_at))
        if token.expires_at is not None:
            resp.expires_at.CopyFrom(_timestamp(token.expires_at))
        if token.name is not None:
            resp.service_user_identity.service_user_id = token_id
            resp.service_user_identity.service_user_name = token.name
        else:
            scope = f"environment {token.environment}" if token.environment else "all environments"
            resp.user_identity.user_id = token_id
            resp.user_identity.username = f"berth token ({scope})"
        return resp

    # member tokens: the unnamed ones (`berth token create`)
    async def member_tokens(self) -> api_pb2.TokensListResponse:
        resp = api_pb2.TokensListResponse()
        for token in await self._live():
            if token.name is None:
                resp.tokens.add(
                    token_id=token.token_id,
                    created_at=token.created_at,
                    workspace_id=WORKSPACE_ID,
                    member_displayname=token.environment or "all environments",
                    disabled=token.disabled_at is not None,
                )
        return resp

    async def set_disabled(self, token_ids: list[str], disabled: bool) -> None:
        for token_id in token_ids:
            await self._record(token_id)  # NotFound before anything changes
        for token_id in token_ids:
            await self._tokens.set_token_disabled(token_id, self._clock.now() if disabled else None)
        self._roles.forget()

    async def delete_token(self, token_id: str) -> None:
        await self._record(token_id)
        await self._tokens.revoke_token(token_id, self._clock.now())

    # service users: named tokens
    async def create_service_user(self, req: api_pb2.ServiceUserCreateRequest) -> api_pb2.ServiceUserCreateResponse:
        if not req.name:
            raise InvalidArgument("A service user needs a name")
        now = self._clock.now()
        expires_at = now + req.expires_in_seconds if req.expires_in_seconds else None
        token_id, secret = new_id("ak"), new_secret()
        if not await self._tokens.add_service_user(token_id, secret_digest(secret), req.name, now, expires_at):
            raise AlreadyExists(f"Service user '{req.name}' already exists")
        self._roles.forget()
        resp = api_pb2.ServiceUserCreateResponse(token_id=token_id, token_secret=secret, service_user_id=token_id)
        if expires_at is not None:
            resp.expires_at.CopyFrom(_timestamp(expires_at))
        return resp

    async def _service_user(self, name_or_id: str) -> TokenRecord:
        found = next((t for t in await self._live() if t.name is not None and name_or_id in (t.name, t.token_id)), None)
        if found is None:
            raise NotFound(f"Service user '{name_or_id}' not found")
        return found

    async def _describe(self, token: TokenRecord, environments: list[str]) -> api_pb2.ServiceUser:
        user = api_pb2.ServiceUser(
            name=token.name or "",
            token_id=token.token_id,
            service_user_id=token.token_id,
            created_by="berth",
            created_at=token.created_at,
            status="disabled" if token.disabled_at is not None else "active",
            scoped=True,
        )
        if token.expires_at is not None:
            user.expires_at = token.expires_at
        for environment in environments:
            role, _ = await self._roles.role(token.token_id, token.environment or None, environment)
            user.environment_roles.add(
                environment_id=f"en-{environment}", environment_name=environment, role=ROLE_ENUMS[role], role_str=role
            )
        return user

    async def service_users(self, environments: list[str]) -> api_pb2.ServiceUserListResponse:
        resp = api_pb2.ServiceUserListResponse()
        for token in await self._live():
            if token.name is not None:
                resp.service_users.append(await self._describe(token, environments))
        return resp

    async def service_user(self, name: str, environments: list[str]) -> api_pb2.ServiceUserInfoResponse:
        return api_pb2.ServiceUserInfoResponse(
            service_user=await self._describe(await self._service_user(name), environments)
        )

    async def delete_service_user(self, req: api_pb2.ServiceUserDeleteRequest) -> None:
        token = await self._service_user(req.service_user_id or req.service_user_name)
        await self._tokens.revoke_token(token.token_id, self._clock.now())
        self._roles.forget()

    # proxy tokens: the web front door's Modal-Key/Modal-Secret pairs
    async def create_proxy_token(self, req: api_pb2.WebhookTokenCreateRequest) -> api_pb2.TokenCreateResponse:
        if req.name:
            raise Unimplemented("Berth does not support proxy token names; create one without --name")
        token_id, secret = await create_token(self._web_tokens, self._clock.now())
        return api_pb2.TokenCreateResponse(token_id=token_id, token_secret=secret)

    async def proxy_tokens(self) -> api_pb2.WebhookTokenListResponse:
        resp = api_pb2.WebhookTokenListResponse()
        for token_id, created_at, revoked_at in await self._web_tokens.tokens():
            if revoked_at is None:
                resp.tokens.add(token_id=token_id, created_at=created_at, scoped=False)
        return resp

    async def delete_proxy_token(self, token_id: str) -> None:
        if not await self._web_tokens.revoke_token(token_id, self._clock.now()):
            raise NotFound(f"Proxy token {token_id} not found")

    def settings(self) -> api_pb2.WorkspaceSettingsResponse:
        return api_pb2.WorkspaceSettingsResponse(
            default_environment_name=DEFAULT_ENVIRONMENT, image_builder_version=self._builder
        )
