"""Warnings for the client that made the current request: anything on the request's path may add one, and the
RPC chain (api/chain.py) sends them back as `x-modal-warning` trailing metadata, which the stock client prints
(once per message)."""

from __future__ import annotations

from contextvars import ContextVar

_pending: ContextVar[list[str] | None] = ContextVar("client_warnings", default=None)


def collect() -> list[str]:
    """Start collecting for this request; returns the list warn() appends to."""
    found: list[str] = []
    _pending.set(found)
    return found


def warn(message: str) -> None:
    """Tell the calling client; a no-op outside a request (e.g. the autoscaler's own loop)."""
    found = _pending.get()
    if found is not None and message not in found:
        found.append(message)
