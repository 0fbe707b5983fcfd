"""`berth web-token create | list | revoke`: proxy-auth tokens for endpoints with requires_proxy_auth=True.
Works on the data dir's database directly, so it needs no running server; revocation is immediate."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

from berth.cli.server_cmds import data_dir_of
from berth.config import Settings
from berth.services.web import create_token
from berth.store.factory import open_stores
from berth.store.ports import EndpointStore

T = TypeVar("T")


def _with_store(args: argparse.Namespace, action: Callable[[EndpointStore], Awaitable[T]]) -> T:
    async def run() -> T:
        settings = Settings(data_dir=data_dir_of(args))
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        stores = await open_stores(settings)
        try:
            return await action(stores.web)
        finally:
            await stores.close()

    return asyncio.run(run())


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if ts else "-"


def cmd_create(args: argparse.Namespace) -> int:
    token_id, secret = _with_store(args, lambda store: create_token(store, time.time()))
    print(f"Modal-Key: {token_id}")
    print(f"Modal-Secret: {secret}")
    print("The secret is shown only once.", file=sys.stderr)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    for token_id, created, revoked in _with_store(args, lambda store: store.tokens()):
        state = f"revoked {_when(revoked)}" if revoked else "active"
        print(f"{token_id}  created {_when(created)}  {state}")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    if not _with_store(args, lambda store: store.revoke_token(args.token_id, time.time())):
        print(f"berth: no active web token {args.token_id}", file=sys.stderr)
        return 1
    print(f"revoked {args.token_id}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    tokens = sub.add_parser("web-token", help="proxy-auth tokens (Modal-Key/Modal-Secret) for web endpoints")
    actions = tokens.add_subparsers(dest="action", required=True)
    for name, func, helptext in (
        ("create", cmd_create, "create a token and print its key and secret"),
        ("list", cmd_list, "list tokens (secrets are stored hashed and never shown again)"),
        ("revoke", cmd_revoke, "revoke a token; requests using it get 401 from then on"),
    ):
        p = actions.add_parser(name, help=helptext)
        p.add_argument("--data-dir")
        if name == "revoke":
            p.add_argument("token_id")
        p.set_defaults(func=func)
