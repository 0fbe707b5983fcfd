"""Object ids in Modal's shape: a short type prefix, a dash and a random base62 body."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string

_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str, length: int = 22) -> str:
    """Each body character is uniform over base62 up to a bias below 2^-40: one read of the system's random
    source carries 40 bits more than the body needs (a character per `secrets.choice` cost a tenth of a
    FunctionMap's server time)."""
    n = int.from_bytes(secrets.token_bytes((length * 6 + 40) // 8 + 1), "big")
    body = []
    for _ in range(length):
        n, r = divmod(n, 62)
        body.append(_ALPHABET[r])
    return prefix + "-" + "".join(body)


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def secret_digest(secret: str) -> str:
    """How every secret Berth hands out is stored: its SHA-256 (the secrets are random, so no salt is needed)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(digest: str, secret: str) -> bool:
    """Constant-time comparison of a presented secret with a stored digest."""
    return hmac.compare_digest(digest, secret_digest(secret))
