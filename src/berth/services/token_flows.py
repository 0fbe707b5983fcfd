"""`modal token new` / `modal setup` on Berth: the client opens a token flow and waits; an operator signed in
to the dashboard opens the flow's page (the URL the CLI prints), checks the code the CLI shows, and approves.
The new token has the approver's environment scope; an approver that a role restricts may not approve.

Flows live in memory for FLOW_TTL_S on the replica that created them (a flow is minutes long and the CLI
that waits on it talks to one server)."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field

from berth.clock import Clock
from berth.errors import NotFound, PermissionDenied
from berth.ids import new_id
from berth.services.accounts import AccountService
from berth.services.roles import EnvironmentRoles

FLOW_TTL_S = 600.0
MAX_WAIT_S = 60.0


@dataclass
class TokenFlow:
    flow_id: str
    wait_secret: str
    code: str
    created_at: float
    token: tuple[str, str] | None = None  # (token id, secret) once approved
    approved: asyncio.Event = field(default_factory=asyncio.Event)


class TokenFlows:
    def __init__(self, accounts: AccountService, roles: EnvironmentRoles, clock: Clock) -> None:
        self._accounts = accounts
        self._roles = roles
        self._clock = clock
        self._flows: dict[str, TokenFlow] = {}

    def _prune(self) -> None:
        now = self._clock.monotonic()
        for flow_id in [f for f, flow in self._flows.items() if now - flow.created_at > FLOW_TTL_S]:
            del self._flows[flow_id]

    def create(self) -> TokenFlow:
        self._prune()
        code = "-".join(secrets.token_hex(2).upper() for _ in range(2))
        flow = TokenFlow(new_id("tf"), secrets.token_urlsafe(24), code, self._clock.monotonic())
        self._flows[flow.flow_id] = flow
        return flow

    def get(self, flow_id: str) -> TokenFlow:
        self._prune()
        flow = self._flows.get(flow_id)
        if flow is None:
            raise NotFound(f"Token flow {flow_id} is unknown or has expired; run `modal token new` again")
        return flow

    async def approve(self, flow_id: str, token_id: str, scope: str) -> TokenFlow:
        flow = self.get(flow_id)
        if flow.token is None:
            if await self._roles.restricted(token_id):
                raise PermissionDenied(f"Token {token_id} has a restricted role and may not approve new tokens")
            flow.token = await self._accounts.create_token(scope or None)
            flow.approved.set()
        return flow

    async def wait(self, flow_id: str, wait_secret: str, timeout: float) -> tuple[str, str] | None:
        flow = self.get(flow_id)
        if not secrets.compare_digest(flow.wait_secret, wait_secret):
            raise PermissionDenied("The token flow's wait secret does not match")
        try:
            await asyncio.wait_for(flow.approved.wait(), min(max(timeout, 0.0), MAX_WAIT_S))
        except TimeoutError:
            return None
        self._flows.pop(flow_id, None)  # the secret is handed out once
        return flow.token
