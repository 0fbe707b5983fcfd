"""`berth token create | list | revoke`: manage client tokens directly in a data dir's store."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime

from berth.cli.server_cmds import data_dir_of
from berth.clock import SystemClock
from berth.config import Settings
from berth.errors import BerthError
from berth.services.accounts import AccountService
from berth.services.audit import AuditLog, local_actor
from berth.store.factory import open_stores


async def _with_accounts(args: argparse.Namespace) -> int:
    stores = await open_stores(Settings(data_dir=data_dir_of(args)))
    store = stores.core
    accounts = AccountService(store, stores.history, SystemClock())
    audit = AuditLog(stores.governance, SystemClock())
    try:
        if args.token_command == "create":
            token_id, secret = await accounts.create_token(args.env)
            await audit.record(local_actor(), "token.create", "token", token_id, args.env or "")
            print(f"token_id={token_id}\ntoken_secret={secret}")
            print(f"Use it with: modal token set --token-id {token_id} --token-secret {secret}", file=sys.stderr)
        elif args.token_command == "list":
            for token_id, env, created, revoked in await store.tokens():
                when = datetime.fromtimestamp(created, UTC).isoformat(timespec="seconds")
                state = "revoked" if revoked else "active"
                print(f"{token_id}\t{env or '*'}\t{when}\t{state}")
        else:
            await accounts.revoke_token(args.token_id)
            await audit.record(local_actor(), "token.revoke", "token", args.token_id)
            print(f"revoked {args.token_id}")
        return 0
    except BerthError as exc:
        print(f"berth: {exc.message}", file=sys.stderr)
        return 1
    finally:
        await stores.close()


def cmd_token(args: argparse.Namespace) -> int:
    return asyncio.run(_with_accounts(args))


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    token = sub.add_parser("token", help="create, list and revoke client tokens")
    actions = token.add_subparsers(dest="token_command", required=True)
    create = actions.add_parser("create", help="create a token (its secret is printed once)")
    create.add_argument("--env", help="scope the token to one environment")
    actions.add_parser("list", help="list tokens")
    revoke = actions.add_parser("revoke", help="revoke a token")
    revoke.add_argument("token_id")
    for p in (token, create, revoke, actions.choices["list"]):
        p.add_argument("--data-dir")
    token.set_defaults(func=cmd_token)
