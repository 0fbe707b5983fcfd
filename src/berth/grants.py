"""Checking the short-lived tokens the server signs (berth.services.signing makes them). This module holds no key
and no store, so a worker can import it to check a router grant with the server's public key."""

from __future__ import annotations

from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from berth.errors import Unauthenticated

ALGORITHM = "EdDSA"
ISSUER = "berth"


def verify_token(public_pem: bytes, token: str, audience: str, now: float) -> dict[str, Any]:
    """The claims of a token signed by the server for `audience`; Unauthenticated if it is forged, expired or
    meant for something else. Workers call this with the public key the hub gave them."""
    key = serialization.load_pem_public_key(public_pem)
    assert isinstance(key, Ed25519PublicKey)
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=audience,
            issuer=ISSUER,
            options={"verify_exp": False},
        )
    except jwt.InvalidTokenError as exc:
        raise Unauthenticated(f"Invalid token: {exc}") from exc
    if float(claims.get("exp", 0)) <= now:
        raise Unauthenticated("Token expired")
    return claims
