"""Tokens and environments: who may call, and the namespaces their named objects live in."""

from __future__ import annotations

from modal._utils.name_utils import is_valid_environment_name
from modal_proto import api_pb2

from berth.clock import Clock
from berth.errors import AlreadyExists, InvalidArgument, NotFound, PermissionDenied, Unimplemented
from berth.ids import new_id, new_secret, secret_digest, secret_matches
from berth.store.ports import EnvironmentStore, TokenStore

DEFAULT_ENVIRONMENT = "main"


def _check_environment_name(name: str) -> None:
    if not is_valid_environment_name(name, allow_periods=False):
        raise InvalidArgument(
            f"Invalid Environment name: '{name}'.\n\nEnvironment names must be 1-64 characters, can only start "
            "with alphanumeric characters, may contain only alphanumeric characters, dashes, and underscores, "
            "and cannot start with 'en-'."
        )


class AccountService:
    def __init__(self, store: TokenStore, deployments: EnvironmentStore, clock: Clock) -> None:
        self._store = store
        self._deployments = deployments
        self._clock = clock

    # tokens: only a SHA-256 digest of each secret is stored
    async def create_token(self, environment: str | None = None) -> tuple[str, str]:
        if environment:
            await self.require_environment(environment)
        token_id, secret = new_id("ak"), new_secret()
        await self._store.add_token(token_id, secret_digest(secret), environment or None, self._clock.now())
        return token_id, secret

    async def verify(self, token_id: str, secret: str) -> str | None:
        """The token's environment scope ('' for all), or None when the pair is not valid."""
        found = await self._store.token(token_id, self._clock.now())
        if found is None or not secret_matches(found[0], secret):
            return None
        return found[1]

    async def revoke_token(self, token_id: str) -> None:
        if not await self._store.revoke_token(token_id, self._clock.now()):
            raise NotFound(f"Token {token_id} not found or already revoked")

    # environments
    async def names(self) -> list[str]:
        return [DEFAULT_ENVIRONMENT] + [
            n for n, _ in await self._deployments.environments() if n != DEFAULT_ENVIRONMENT
        ]

    async def require_environment(self, name: str) -> str:
        name = name or DEFAULT_ENVIRONMENT
        if name not in await self.names():
            raise NotFound(f"Environment '{name}' not found")
        return name

    async def create_environment(self, name: str) -> None:
        _check_environment_name(name)
        if name == DEFAULT_ENVIRONMENT or not await self._deployments.add_environment(name, self._clock.now()):
            raise AlreadyExists(f"Environment '{name}' already exists")

    async def delete_environment(self, name: str) -> None:
        if name == DEFAULT_ENVIRONMENT:
            raise InvalidArgument("The default environment 'main' cannot be deleted")
        if not await self._deployments.delete_environment(name):
            raise NotFound(f"Environment '{name}' not found")

    async def update_environment(self, req: api_pb2.EnvironmentUpdateRequest) -> api_pb2.EnvironmentListItem:
        """`modal environment update --set-name`: a rename moves the environment's apps, tokens, named objects
        and roles along. The other settings have no meaning on Berth and are refused by name."""
        current = await self.require_environment(req.current_name)
        if req.HasField("web_suffix"):
            raise Unimplemented(
                "Berth does not support an environment web suffix: web endpoints are served on ports of the "
                "server's own host (see the deploy output for their URLs), not on per-environment subdomains"
            )
        if req.image_builder_version:
            raise Unimplemented(
                "Berth does not support a per-environment image builder version: it builds every image with one"
            )
        if req.max_concurrent_tasks or req.max_concurrent_gpus or req.block_unauthenticated_resources:
            raise Unimplemented("Berth does not support per-environment task or GPU limits or resource blocking")
        new = req.name.value if req.HasField("name") else current
        if new != current:
            if current == DEFAULT_ENVIRONMENT:
                raise InvalidArgument("The default environment 'main' cannot be renamed")
            _check_environment_name(new)
            if new in await self.names():
                raise AlreadyExists(f"Environment '{new}' already exists")
            if not await self._deployments.rename_environment(current, new):
                raise NotFound(f"Environment '{current}' not found")
        item: api_pb2.EnvironmentListItem = next(i for i in (await self.list_environments()).items if i.name == new)
        return item

    async def list_environments(self) -> api_pb2.EnvironmentListResponse:
        created = dict(await self._deployments.environments())
        resp = api_pb2.EnvironmentListResponse()
        for name in await self.names():
            resp.items.add(
                name=name,
                environment_id=f"en-{name}",
                default=name == DEFAULT_ENVIRONMENT,
                created_at=created.get(name, 0.0),
                webhook_suffix="berth",
            )
        return resp

    @staticmethod
    def scope(requested: str, token_scope: str | None) -> str:
        """The environment a request acts in; a token scoped to one environment may act only there."""
        env = requested or token_scope or DEFAULT_ENVIRONMENT
        if token_scope and env != token_scope:
            raise PermissionDenied(f"This token may only act in environment '{token_scope}', not '{env}'")
        return env
