"""Who may see the dashboard: sign-in with a client token (id + secret) or a one-time link, and the
browser sessions they open. A session acts as one client token and is checked against it on every request,
so a revoked token loses the dashboard at once; a token scoped to an environment sees only that one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from berth.clock import Clock
from berth.ids import new_secret, secret_digest
from berth.services.accounts import AccountService
from berth.store.ports import DashboardGrantStore, TokenStore

LINK_TTL_S = 600.0
SESSION_TTL_S = 12 * 3600.0


class GrantStore(DashboardGrantStore, TokenStore, Protocol):
    """Dashboard grants and the tokens they act as."""


@dataclass(frozen=True)
class Viewer:
    """A signed-in dashboard user: the token it acts as and that token's environment scope ('' for all)."""

    token_id: str
    scope: str

    def may_see(self, environment: str) -> bool:
        return not self.scope or environment == self.scope


class DashboardAccess:
    def __init__(self, store: GrantStore, accounts: AccountService, clock: Clock) -> None:
        self._store = store
        self._accounts = accounts
        self._clock = clock

    async def create_link(self, environment: str | None = None) -> tuple[str, str]:
        """A fresh token (scoped to `environment` when given) and a one-time sign-in code acting as it:
        revoking that token ends whatever the link opened. Returns (token id, code)."""
        token_id, _ = await self._accounts.create_token(environment)
        code = new_secret()
        await self._store.add_dashboard_grant(secret_digest(code), "link", token_id, self._clock.now() + LINK_TTL_S)
        return token_id, code

    async def _open_session(self, token_id: str) -> str:
        session = new_secret()
        expires = self._clock.now() + SESSION_TTL_S
        await self._store.add_dashboard_grant(secret_digest(session), "session", token_id, expires)
        return session

    async def sign_in(self, token_id: str, token_secret: str) -> str | None:
        """A new session secret for a valid token pair, else None."""
        if await self._accounts.verify(token_id, token_secret) is None:
            return None
        return await self._open_session(token_id)

    async def redeem(self, code: str) -> str | None:
        """A new session secret for an unused, unexpired link (which is then used up), else None."""
        token_id = await self._store.redeem_dashboard_link(secret_digest(code), self._clock.now())
        if token_id is None or await self._store.token(token_id, self._clock.now()) is None:
            return None
        return await self._open_session(token_id)

    async def viewer(self, session: str) -> Viewer | None:
        """Who a session acts as, if it is live and its token is not revoked."""
        if not session:
            return None
        token_id = await self._store.dashboard_session(secret_digest(session), self._clock.now())
        if token_id is None:
            return None
        found = await self._store.token(token_id, self._clock.now())
        return Viewer(token_id, found[1]) if found is not None else None

    async def sign_out(self, session: str) -> None:
        await self._store.end_dashboard_session(secret_digest(session))
