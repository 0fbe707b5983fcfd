"""The berth command line. Each command family registers itself from its own module."""

from __future__ import annotations

import argparse
import sys

from berth.cli import (
    cluster_cmds,
    dashboard_cmds,
    governance_cmds,
    host_cmds,
    proxy_cmds,
    server_cmds,
    token_cmds,
    web_cmds,
)
from berth.errors import StoreUnavailable

# Command families, in the order `berth --help` lists them.
FAMILIES = [server_cmds, cluster_cmds, token_cmds, dashboard_cmds, web_cmds, proxy_cmds, governance_cmds, host_cmds]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="berth", description="Self-hosted, Modal-compatible serverless Python")
    sub = p.add_subparsers(dest="command", required=True)
    for family in FAMILIES:
        family.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except StoreUnavailable as exc:
        # The message names the database without its password (store/postgres/db.redact).
        print(f"berth: {exc.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
