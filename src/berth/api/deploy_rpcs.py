"""RPC families for deployments, lookups by name, app listing and history, environments and tokens."""

from __future__ import annotations

from urllib.parse import quote

from google.protobuf import empty_pb2
from modal_proto import api_pb2

from berth.api.caller import Caller
from berth.api.context import Services
from berth.errors import InvalidArgument, Unimplemented

EMPTY = empty_pb2.Empty()


class DeploymentRpcs:
    s: Services

    async def _env(self, requested: str, caller: Caller) -> str:
        return await self.s.accounts.require_environment(self.s.accounts.scope(requested, caller.environment))

    async def AppGetByDeploymentName(
        self, req: api_pb2.AppGetByDeploymentNameRequest, caller: Caller
    ) -> api_pb2.AppGetByDeploymentNameResponse:
        env = await self._env(req.environment_name, caller)
        return await self.s.deployments.by_name(env, req.name)

    async def AppGetLifecycle(
        self, req: api_pb2.AppGetLifecycleRequest, caller: Caller
    ) -> api_pb2.AppGetLifecycleResponse:
        return api_pb2.AppGetLifecycleResponse(lifecycle=await self.s.deployments.lifecycle(req.app_id))

    async def FunctionGet(self, req: api_pb2.FunctionGetRequest, caller: Caller) -> api_pb2.FunctionGetResponse:
        return await self.s.deployments.function_get(req, await self._env(req.environment_name, caller))

    async def ClassGet(self, req: api_pb2.ClassGetRequest, caller: Caller) -> api_pb2.ClassGetResponse:
        return await self.s.deployments.class_get(req, await self._env(req.environment_name, caller))

    async def AppGetOrCreate(
        self, req: api_pb2.AppGetOrCreateRequest, caller: Caller
    ) -> api_pb2.AppGetOrCreateResponse:
        return await self.s.deployments.get_or_create(req, await self._env(req.environment_name, caller))

    async def AppList(self, req: api_pb2.AppListRequest, caller: Caller) -> api_pb2.AppListResponse:
        env = await self._env(req.environment_name, caller)
        return await self.s.deployments.list_apps(env, lambda app_id: len(self.s.tasks.of_app(app_id)))

    async def AppDeploymentHistory(
        self, req: api_pb2.AppDeploymentHistoryRequest, caller: Caller
    ) -> api_pb2.AppDeploymentHistoryResponse:
        return await self.s.deployments.history(req.app_id)

    async def AppRollback(self, req: api_pb2.AppRollbackRequest, caller: Caller) -> api_pb2.AppRollbackResponse:
        return await self.s.deployments.rollback(req.app_id, req.version)

    async def AppRollover(self, req: api_pb2.AppRolloverRequest, caller: Caller) -> api_pb2.AppRolloverResponse:
        return await self.s.deployments.rollover(req.app_id)

    async def AppPromote(self, req: api_pb2.AppPromoteRequest, caller: Caller) -> api_pb2.AppPromoteResponse:
        return await self.s.deployments.promote(req.app_id, req.version)

    async def AppFetchLogs(self, req: api_pb2.AppFetchLogsRequest, caller: Caller) -> api_pb2.AppFetchLogsResponse:
        await self.s.apps.get(req.app_id)
        return await self.s.log_history.fetch(req, self.s.clock.now())

    async def AppCountLogs(self, req: api_pb2.AppCountLogsRequest, caller: Caller) -> api_pb2.AppCountLogsResponse:
        await self.s.apps.get(req.app_id)
        return await self.s.log_history.count(req, self.s.clock.now())


AUTH_AUDIENCE = "modal-client"
AUTH_TOKEN_TTL_S = 3600.0


class AccountRpcs:
    s: Services

    async def EnvironmentCreate(self, req: api_pb2.EnvironmentCreateRequest, caller: Caller) -> empty_pb2.Empty:
        if req.is_managed or req.default_member_role or req.default_member_role_str:
            raise Unimplemented(
                "Berth does not support restricted environments or per-environment default roles: create the "
                "environment, then give tokens their roles with `modal environment roles update ENV TOKEN "
                "--service-user --role R`"
            )
        await self.s.accounts.create_environment(req.name)
        return EMPTY

    async def EnvironmentList(self, req: empty_pb2.Empty, caller: Caller) -> api_pb2.EnvironmentListResponse:
        return await self.s.accounts.list_environments()

    async def EnvironmentDelete(self, req: api_pb2.EnvironmentDeleteRequest, caller: Caller) -> empty_pb2.Empty:
        await self.s.accounts.delete_environment(req.name)
        return EMPTY

    async def EnvironmentGetOrCreate(
        self, req: api_pb2.EnvironmentGetOrCreateRequest, caller: Caller
    ) -> api_pb2.EnvironmentGetOrCreateResponse:
        env = self.s.accounts.scope(req.deployment_name, caller.environment)
        if req.object_creation_type == api_pb2.OBJECT_CREATION_TYPE_CREATE_IF_MISSING and env not in (
            await self.s.accounts.names()
        ):
            await self.s.accounts.create_environment(env)
        return self.s.environment(await self.s.accounts.require_environment(env))

    async def EnvironmentUpdate(
        self, req: api_pb2.EnvironmentUpdateRequest, caller: Caller
    ) -> api_pb2.EnvironmentListItem:
        await self.s.roles.require_admin(caller.token_id, caller.environment, "change an environment's settings")
        updated = await self.s.accounts.update_environment(req)
        self.s.roles.forget()  # a rename moved the roles along
        return updated

    async def _environment_by_id(self, environment_id: str) -> str:
        if not environment_id.startswith("en-"):
            raise InvalidArgument(f"Invalid environment id '{environment_id}'")
        return await self.s.accounts.require_environment(environment_id.removeprefix("en-"))

    async def EnvironmentGetRoles(
        self, req: api_pb2.EnvironmentGetRolesRequest, caller: Caller
    ) -> api_pb2.EnvironmentGetRolesResponse:
        return await self.s.roles.roles(await self._environment_by_id(req.environment_id))

    async def EnvironmentRoleSet(self, req: api_pb2.EnvironmentRoleSetRequest, caller: Caller) -> empty_pb2.Empty:
        environment = await self._environment_by_id(req.environment_id) if req.environment_id else ""
        environment = environment or await self.s.accounts.require_environment(req.environment_name)
        await self.s.roles.require_admin(caller.token_id, caller.environment, "change environment roles")
        await self.s.roles.set_role(environment, req)
        return EMPTY

    async def AuthTokenGet(self, req: api_pb2.AuthTokenGetRequest, caller: Caller) -> api_pb2.AuthTokenGetResponse:
        """The short-lived token clients send as `x-modal-auth-token` (sandboxes V2, the JS SDK); it names the
        caller and expires, and the client fetches another before it does."""
        subject = caller.token_id or caller.task_id or ""
        return api_pb2.AuthTokenGetResponse(token=self.s.signer.issue(subject, AUTH_AUDIENCE, AUTH_TOKEN_TTL_S))

    async def WorkspaceDashboardUrlGet(
        self, req: api_pb2.WorkspaceDashboardUrlRequest, caller: Caller
    ) -> api_pb2.WorkspaceDashboardUrlResponse:
        """`modal dashboard`: this server's web dashboard (sign in with a token or `berth dashboard-link`)."""
        env = await self.s.accounts.require_environment(self.s.accounts.scope(req.environment_name, caller.environment))
        return api_pb2.WorkspaceDashboardUrlResponse(url=f"{self.s.settings.http_url}/apps?env={quote(env)}")
