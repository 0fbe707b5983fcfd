"""Short-lived signed tokens (JWTs): the `AuthTokenGet` token every client holds, and the grants that let a
client reach one task's command router on its worker. They are signed with one Ed25519 key kept in the
store, so every server replica signs alike, and a worker can check a grant with the public key alone:
holding it does not let a worker mint grants of its own."""

from __future__ import annotations

from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from berth.clock import Clock
from berth.grants import ALGORITHM, ISSUER, verify_token
from berth.store.ports import ObjectStore

_KIND = "signing_key"
_KEY_ID = "jwt-ed25519"


class Signer:
    def __init__(self, store: ObjectStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._key: Ed25519PrivateKey | None = None

    async def load(self) -> None:
        """Reads the signing key, making it on first start. Two replicas starting at once may both write one;
        each reads back what the store kept, so they agree from then on."""
        body = await self._store.get_object(_KIND, _KEY_ID)
        if body is None:
            pem = Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            await self._store.put_object(_KIND, _KEY_ID, pem, self._clock.now(), name=_KEY_ID)
            body = await self._store.get_object(_KIND, _KEY_ID)
        assert body is not None
        key = serialization.load_pem_private_key(body, password=None)
        assert isinstance(key, Ed25519PrivateKey)
        self._key = key

    @property
    def public_pem(self) -> bytes:
        return self._private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def issue(self, subject: str, audience: str, ttl_s: float, **claims: Any) -> str:
        now = self._clock.now()
        payload = {"iss": ISSUER, "sub": subject, "aud": audience, "iat": int(now), "exp": int(now + ttl_s), **claims}
        return jwt.encode(payload, self._private, algorithm=ALGORITHM)

    def verify(self, token: str, audience: str) -> dict[str, Any]:
        return verify_token(self.public_pem, token, audience, self._clock.now())

    @property
    def _private(self) -> Ed25519PrivateKey:
        if self._key is None:
            raise RuntimeError("Signer.load() was not awaited")
        return self._key
