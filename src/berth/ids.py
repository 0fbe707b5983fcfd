"""Object ids in Modal's shape: a short type prefix, a dash and a random base62 body."""

from __future__ import annotations

import secrets
import string

_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str, length: int = 22) -> str:
    return prefix + "-" + "".join(secrets.choice(_ALPHABET) for _ in range(length))


def new_secret() -> str:
    return secrets.token_urlsafe(32)
