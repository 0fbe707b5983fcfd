"""`berth proxy create | list | delete`: the operator's proxies, each a source address that functions with
`proxy=modal.Proxy.from_name(NAME)` send from. Works on the data dir's database directly (as `berth web-token`
does); the address must be one the workers' hosts own."""

from __future__ import annotations

import argparse
import json

from berth.cli.server_cmds import store_command
from berth.clock import SystemClock
from berth.services.proxies import ProxyService
from berth.store.ports import Stores


async def _proxy(args: argparse.Namespace, stores: Stores) -> None:
    proxies = ProxyService(stores.state, SystemClock())
    if args.proxy_command == "create":
        created = await proxies.create(args.name, args.env, args.source_ip)
        print(f"Created proxy {created.name} ({created.proxy_id}) with source address {args.source_ip}")
    elif args.proxy_command == "delete":
        await proxies.delete(args.name, args.env)
        print(f"Deleted proxy {args.name}")
    else:
        found = await proxies.list(args.env)
        if args.json:
            rows = [{"name": p.name, "proxy_id": p.proxy_id, "source_ip": p.proxy_ips[0].proxy_ip} for p in found]
            print(json.dumps(rows))
            return
        for p in found:
            print(f"{p.name}\t{p.proxy_id}\t{p.proxy_ips[0].proxy_ip}")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    proxy = sub.add_parser("proxy", help="proxies: fixed source addresses for functions' outbound traffic")
    actions = proxy.add_subparsers(dest="proxy_command", required=True)
    create = actions.add_parser("create", help="create a proxy whose connections leave from --source-ip")
    create.add_argument("name")
    create.add_argument("--source-ip", required=True, help="an IPv4 address the workers' hosts own")
    delete = actions.add_parser("delete", help="delete a proxy")
    delete.add_argument("name")
    list_ = actions.add_parser("list", help="the proxies of an environment")
    list_.add_argument("--json", action="store_true")
    for p in (proxy, create, delete, list_):
        p.add_argument("--data-dir")
        p.add_argument("--env", default="main", help="the environment (default: main)")
    proxy.set_defaults(func=store_command(_proxy))
