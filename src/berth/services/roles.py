"""Environment roles: what each token may do in each environment. Berth's principals are its tokens; the
stock client sees each as a service user named by its token id (`modal environment roles list|update ENV
TOKEN_ID --service-user --role viewer`).

A role is 'contributor' (read-write), 'viewer' (read-only) or 'no-access'. A token with no assignment in an
environment is a contributor there, unless it was created scoped to another environment (`berth token
create --env`), which gives it no access; a service user (`modal workspace service-users create`, a named
token) has no access anywhere until it is given a role, as on Modal. Assignments are cached for a few
seconds, so a change made through another server replica takes effect within that time."""

from __future__ import annotations

from typing import Any, Protocol, cast

from google.protobuf.message import Message
from modal_proto import api_pb2

from berth.clock import Clock
from berth.errors import InvalidArgument, NotFound, PermissionDenied
from berth.store.ports import EnvironmentRoleStore, TokenStore

CONTRIBUTOR, VIEWER, NO_ACCESS = "contributor", "viewer", "no-access"
ROLE_ENUMS = {
    CONTRIBUTOR: api_pb2.ENVIRONMENT_ROLE_CONTRIBUTOR,
    VIEWER: api_pb2.ENVIRONMENT_ROLE_VIEWER,
    NO_ACCESS: api_pb2.ENVIRONMENT_ROLE_NO_ACCESS,
}
CACHE_S = 5.0

# What a viewer may call: RPCs that only read. Everything else (deploy, stop, create, call, write) needs a
# contributor.
READ_ONLY_RPCS = frozenset(
    """
    AppCountLogs AppDeploymentHistory AppFetchLogs AppGetByDeploymentName AppGetInfo AppGetLayout AppGetLifecycle
    AppGetLogs AppGetObjects AppGetTags AppGetTimeRangeStats AppList AppLookup BlobGet ClassGet CliCommandSuggest
    ClientHello ClusterGet DictContains DictContents DictGet DictGetById DictLen DictList EndpointGetByName
    EndpointGetInfo
    EndpointList EnvironmentGetRoles EnvironmentList FunctionBlobGet FunctionCallCount FunctionCallFetch
    FunctionCallFromId FunctionCallGetDataOut FunctionCallGetInfo FunctionCallList FunctionGet FunctionGetById
    FunctionGetCallGraph FunctionGetCurrentStats FunctionGetMetrics FunctionGetOutputs FunctionGetSchedulingParams
    FunctionGetTimeRangeStats FunctionListVariants ImageFromId ImageGetByTag ImageJoinStreaming ImageListTags
    ImageTagRevisions MetricsGetInfo ObjectSuggest QueueGetById QueueLen QueueList QueueNextItems SandboxGetFromName
    SandboxGetFromNameV2 SandboxGetLogs SandboxGetStats SandboxGetStatsV2 SandboxList SandboxListV2 SandboxTagsGet
    SandboxTagsGetV2 ProxyGet ProxyList SecretGetInfo SecretList ServiceUserInfo ServiceUserList
    SharedVolumeGetFile SharedVolumeList
    SharedVolumeListFiles SharedVolumeListFilesStream TaskGetInfo TaskList TokenInfoGet TokensList VolumeGetById
    VolumeGetFile VolumeGetFile2 VolumeList VolumeListFiles VolumeListFiles2 WorkspaceMembersList
    WorkspaceNameLookup WorkspaceSettings
    """.split()
)
# Lookups when they ask to create nothing (`modal dict get`, `App.lookup`); creations otherwise.
_GET_OR_CREATE_RPCS = frozenset(
    """AppGetOrCreate DictGetOrCreate QueueGetOrCreate SecretGetOrCreate VolumeGetOrCreate SharedVolumeGetOrCreate
    EnvironmentGetOrCreate ProxyGetOrCreate""".split()
)


def reads_only(rpc: str, request: Message | None) -> bool:
    if rpc in READ_ONLY_RPCS:
        return True
    if rpc in _GET_OR_CREATE_RPCS and request is not None:
        field = request.DESCRIPTOR.fields_by_name.get("object_creation_type")
        unspecified = api_pb2.OBJECT_CREATION_TYPE_UNSPECIFIED
        return field is None or bool(cast(Any, request).object_creation_type == unspecified)
    return False


def _role_name(req: api_pb2.EnvironmentRoleSetRequest) -> str | None:
    """The role asked for; None to remove the assignment (the deprecated `members remove`)."""
    if req.role_str:
        if req.role_str not in ROLE_ENUMS:
            raise InvalidArgument(f"Unknown environment role '{req.role_str}': use contributor, viewer or no-access")
        return req.role_str
    if req.role == api_pb2.ENVIRONMENT_ROLE_UNSPECIFIED:
        return None
    by_enum = {v: k for k, v in ROLE_ENUMS.items()}
    if req.role not in by_enum:
        raise InvalidArgument("Berth supports only the contributor, viewer and no-access environment roles")
    return by_enum[req.role]


class RoleStore(TokenStore, EnvironmentRoleStore, Protocol):
    """Tokens and their role assignments."""


class EnvironmentRoles:
    def __init__(self, store: RoleStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._assigned: dict[tuple[str, str], str] = {}  # (environment, token id) → role
        self._service_users: set[str] = set()  # tokens with no access where no role is assigned
        self._loaded_at = -CACHE_S

    async def _assignments(self) -> dict[tuple[str, str], str]:
        now = self._clock.monotonic()
        if now - self._loaded_at >= CACHE_S:
            self._assigned = {(env, tok): role for env, tok, role in await self._store.environment_roles()}
            self._service_users = {t.token_id for t in await self._store.token_records() if t.name is not None}
            self._loaded_at = now
        return self._assigned

    async def role(self, token_id: str, scope: str | None, environment: str) -> tuple[str, bool]:
        """(the token's role in the environment, whether it is assigned rather than the default)."""
        assigned = (await self._assignments()).get((environment, token_id))
        if assigned is not None:
            return assigned, True
        if token_id in self._service_users or (scope and scope != environment):
            return NO_ACCESS, False
        return CONTRIBUTOR, False

    async def restricted(self, token_id: str) -> bool:
        """Whether any assignment limits this token (else no request of it needs a role check)."""
        assigned = await self._assignments()
        return token_id in self._service_users or any(
            tok == token_id and role != CONTRIBUTOR for (_, tok), role in assigned.items()
        )

    async def authorize(self, token_id: str, scope: str | None, environment: str, rpc: str, request: Message) -> None:
        role, _ = await self.role(token_id, scope, environment)
        if role == NO_ACCESS:
            raise PermissionDenied(f"Token {token_id} has no access to environment '{environment}' (role no-access)")
        if role == VIEWER and not reads_only(rpc, request):
            raise PermissionDenied(
                f"Token {token_id} has the viewer role in environment '{environment}': it may read there but not "
                f"change anything ({rpc}). A contributor can raise its role with `modal environment roles update "
                f"{environment} {token_id} --service-user --role contributor`."
            )

    async def require_admin(self, token_id: str | None, scope: str | None, what: str) -> None:
        """Workspace-wide changes (roles, environments) need a token that nothing restricts."""
        if token_id is None or scope or await self.restricted(token_id):
            raise PermissionDenied(
                f"Only a token with full access to every environment may {what}; "
                f"{token_id or 'this caller'} is restricted"
            )

    async def roles(self, environment: str) -> api_pb2.EnvironmentGetRolesResponse:
        resp = api_pb2.EnvironmentGetRolesResponse(name=environment, default_member_role=ROLE_ENUMS[CONTRIBUTOR])
        for token in await self._store.token_records():
            if token.revoked_at is not None:
                continue
            role, assigned = await self.role(token.token_id, token.environment or None, environment)
            resp.principal_roles.add(
                service_user_id=token.token_id,
                service_user_name=token.name or token.token_id,
                role_str=role,
                role=ROLE_ENUMS[role],
                choosable_roles=list(ROLE_ENUMS.values()),
                inherits_default_member_role=not assigned,
                has_role_assignment=assigned,
            )
        return resp

    async def set_role(self, environment: str, req: api_pb2.EnvironmentRoleSetRequest) -> None:
        if req.user_id:
            raise InvalidArgument("Berth has no workspace users, only tokens: pass the token id with --service-user")
        wanted = req.service_user_id or req.service_user_name
        live = [t for t in await self._store.token_records() if t.revoked_at is None]
        found = next((t for t in live if wanted in (t.token_id, t.name)), None)
        if found is None:
            raise NotFound(f"Service user or token '{wanted}' not found")
        token_id = found.token_id
        await self._store.set_environment_role(environment, token_id, _role_name(req))
        self.forget()

    def forget(self) -> None:
        """Reads the assignments again at the next check: this replica sees its own changes at once."""
        self._loaded_at = -CACHE_S
