"""`berth dashboard-link`: a one-time sign-in link to the web dashboard, made in a data dir's store. The
link acts as a fresh token (revoke it with `berth token revoke` to end what the link opened)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from urllib.parse import quote

from berth.cli.server_cmds import data_dir_of
from berth.clock import SystemClock
from berth.config import Settings
from berth.errors import BerthError
from berth.services.accounts import AccountService
from berth.services.dashboard_access import LINK_TTL_S, DashboardAccess
from berth.store.factory import open_stores


async def _link(args: argparse.Namespace) -> int:
    data_dir = data_dir_of(args)
    settings = Settings(data_dir=data_dir)
    try:
        http_url = str(json.loads((data_dir / "server.json").read_text())["http_url"])
    except (OSError, ValueError, KeyError):
        http_url = settings.http_url
    stores = await open_stores(settings)
    clock = SystemClock()
    access = DashboardAccess(stores.core, AccountService(stores.core, stores.history, clock), clock)
    try:
        token_id, code = await access.create_link(args.env)
    except BerthError as exc:
        print(f"berth: {exc.message}", file=sys.stderr)
        return 1
    finally:
        await stores.close()
    print(f"{http_url}/login/link?code={quote(code)}")
    minutes = int(LINK_TTL_S // 60)
    print(
        f"The link works once, for {minutes} minutes; it signs in as token {token_id}"
        f" (end its sessions with `berth token revoke {token_id}`).",
        file=sys.stderr,
    )
    return 0


def cmd_dashboard_link(args: argparse.Namespace) -> int:
    return asyncio.run(_link(args))


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("dashboard-link", help="print a one-time sign-in link to the web dashboard")
    p.add_argument("--env", help="scope the link's token to one environment")
    p.add_argument("--data-dir")
    p.set_defaults(func=cmd_dashboard_link)
