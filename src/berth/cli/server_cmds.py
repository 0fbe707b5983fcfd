"""`berth up | status | env`: run a server and point clients at it."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shlex
import sys
import urllib.request
from pathlib import Path

from berth.config import Settings, default_data_dir, default_runtime


def data_dir_of(args: argparse.Namespace) -> Path:
    return Path(args.data_dir).expanduser().resolve() if args.data_dir else default_data_dir()


def container_host(args: argparse.Namespace) -> str:
    """Process containers share the host's network; OCI containers reach it through their bridge."""
    if args.runtime == "process":
        return str(args.host)
    from berth.worker.network import HOST_IP

    return HOST_IP


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("hpack").setLevel(logging.WARNING)


def cmd_up(args: argparse.Namespace) -> int:
    from berth.server import serve

    setup_logging(args.verbose)
    settings = Settings(
        data_dir=data_dir_of(args),
        host=args.host,
        port=args.port,
        runtime=args.runtime,
        container_host=container_host(args),
    )
    try:
        asyncio.run(serve(settings))
    except OSError as exc:
        print(f"berth: cannot start the server: {exc}", file=sys.stderr)
        return 1
    return 0


def _server_info(data_dir: Path) -> dict[str, str] | None:
    try:
        return dict(json.loads((data_dir / "server.json").read_text()))
    except (OSError, ValueError):
        return None


def cmd_status(args: argparse.Namespace) -> int:
    info = _server_info(data_dir_of(args))
    if info is None:
        print("berth: no server is running on this data dir", file=sys.stderr)
        return 1
    try:
        with urllib.request.urlopen(info["http_url"] + "/healthz", timeout=2) as resp:
            ok = resp.status == 200
    except OSError as exc:
        print(f"berth: server at {info['server_url']} is not answering: {exc}", file=sys.stderr)
        return 1
    print(f"berth: serving at {info['server_url']}" if ok else "berth: unhealthy")
    return 0 if ok else 1


def cmd_env(args: argparse.Namespace) -> int:
    data_dir = data_dir_of(args)
    try:
        creds = json.loads((data_dir / "credentials.json").read_text())
    except OSError:
        print(f"berth: no credentials in {data_dir}; start the server once with `berth up`", file=sys.stderr)
        return 1
    info = _server_info(data_dir)
    url = info["server_url"] if info else f"http://127.0.0.1:{args.port}"
    print(
        f"export MODAL_SERVER_URL={shlex.quote(url)} MODAL_TOKEN_ID={shlex.quote(creds['token_id'])} "
        f"MODAL_TOKEN_SECRET={shlex.quote(creds['token_secret'])}"
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    up = sub.add_parser("up", help="run a server and a local worker in the foreground")
    up.add_argument("--data-dir")
    up.add_argument("--port", type=int, default=50051)
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument(
        "--runtime",
        default=default_runtime(),
        choices=["process", "crun", "runc", "runsc"],
        help="container runtime (default: crun, or $BERTH_RUNTIME): crun, runc, runsc run isolated OCI containers; "
        "process is a developer option with NO isolation",
    )
    up.add_argument("-v", "--verbose", action="store_true")
    up.set_defaults(func=cmd_up)
    status = sub.add_parser("status", help="exit 0 when the server on this data dir is serving")
    status.add_argument("--data-dir")
    status.set_defaults(func=cmd_status)
    env = sub.add_parser("env", help="print the shell exports a modal client needs")
    env.add_argument("--data-dir")
    env.add_argument("--port", type=int, default=50051)
    env.set_defaults(func=cmd_env)
