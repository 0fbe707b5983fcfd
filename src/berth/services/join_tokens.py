"""Join tokens: what a worker presents to join this control plane (`berth worker --join-token`). They are
separate from client tokens (a worker token cannot call the API, a client token cannot join), stored as
digests, and revocable: a revoked token no longer joins or fetches files."""

from __future__ import annotations

import json
from dataclasses import dataclass

from berth.clock import Clock
from berth.errors import NotFound
from berth.ids import new_id, new_secret, secret_digest, secret_matches
from berth.store.ports import ObjectStore

_KIND = "join_token"


@dataclass
class JoinToken:
    token_id: str
    created_at: float
    revoked_at: float | None


class JoinTokens:
    def __init__(self, store: ObjectStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def create(self) -> str:
        """A new token, `<id>:<secret>`; only the secret's digest is kept."""
        token_id, secret = new_id("wt"), new_secret()
        await self._put(token_id, secret_digest(secret), self._clock.now(), None)
        return f"{token_id}:{secret}"

    async def verify(self, token: str) -> bool:
        token_id, _, secret = token.partition(":")
        body = await self._store.get_object(_KIND, token_id) if token_id.startswith("wt-") else None
        if body is None or not secret:
            return False
        rec = json.loads(body)
        return rec["revoked_at"] is None and secret_matches(rec["digest"], secret)

    async def revoke(self, token_id: str) -> None:
        body = await self._store.get_object(_KIND, token_id)
        if body is None or json.loads(body)["revoked_at"] is not None:
            raise NotFound(f"No active join token {token_id}")
        rec = json.loads(body)
        await self._put(token_id, rec["digest"], rec["created_at"], self._clock.now())

    async def get(self, token_id: str) -> JoinToken | None:
        body = await self._store.get_object(_KIND, token_id)
        if body is None:
            return None
        rec = json.loads(body)
        return JoinToken(token_id, rec["created_at"], rec["revoked_at"])

    async def _put(self, token_id: str, digest: str, created_at: float, revoked_at: float | None) -> None:
        body = json.dumps({"digest": digest, "created_at": created_at, "revoked_at": revoked_at}).encode()
        await self._store.put_object(_KIND, token_id, body, created_at, name=token_id)
