"""`berth up | status | env | trust`: run a server and point clients at it."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import shlex
import shutil
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from berth.config import Settings, default_data_dir, default_runtime

if TYPE_CHECKING:
    from berth.store.ports import Stores


def data_dir_of(args: argparse.Namespace) -> Path:
    return Path(args.data_dir).expanduser().resolve() if args.data_dir else default_data_dir()


def store_command(
    body: Callable[[argparse.Namespace, Stores], Awaitable[None]],
) -> Callable[[argparse.Namespace], int]:
    """An operator command that works on the data dir's stores directly: exit code 1 with Berth's message on a
    BerthError, 0 otherwise; the stores are closed either way."""
    from berth.errors import BerthError
    from berth.store.factory import open_stores

    async def run(args: argparse.Namespace) -> int:
        settings = Settings(data_dir=data_dir_of(args))
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        stores = await open_stores(settings)
        try:
            await body(args, stores)
            return 0
        except BerthError as exc:
            print(f"berth: {exc.message}", file=sys.stderr)
            return 1
        finally:
            await stores.close()

    return lambda args: asyncio.run(run(args))


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
    if args.emulate:
        settings = replace(settings, emulate=True)
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


SYSTEM_CA_DIR = Path("/usr/local/share/ca-certificates")
TRUST_BUNDLE = "trust-bundle.pem"


def _system_roots() -> Path | None:
    """The CA bundle this host's OpenSSL trusts by default (Debian: /etc/ssl/certs/ca-certificates.crt)."""
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile, "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def cmd_trust(args: argparse.Namespace) -> int:
    """Make clients on this host trust Berth's CA, which signs tunnel (`encrypted_ports`) certificates.
    By default: a bundle of the system's roots plus Berth's CA, and the SSL_CERT_FILE export that makes
    Python's ssl (urllib, http.client, aiohttp's default), curl and other OpenSSL programs use it.
    --system: install the CA into the system store (update-ca-certificates), for every program and user."""
    from berth.tls import ensure_ca

    tls_dir = data_dir_of(args) / "tls"
    ca = ensure_ca(tls_dir)
    if args.system:
        if shutil.which("update-ca-certificates") is None:
            print("berth: update-ca-certificates is not installed (apt package ca-certificates)", file=sys.stderr)
            return 1
        digest = hashlib.sha256(ca.read_bytes()).hexdigest()[:12]
        SYSTEM_CA_DIR.mkdir(parents=True, exist_ok=True)
        target = SYSTEM_CA_DIR / f"berth-{digest}.crt"
        target.write_bytes(ca.read_bytes())
        target.chmod(0o644)
        done = subprocess.run(["update-ca-certificates"], capture_output=True, text=True)
        if done.returncode != 0:
            print(f"berth: update-ca-certificates failed: {done.stderr.strip()}", file=sys.stderr)
            return 1
        print(f"berth: installed Berth's CA as {target}; remove it and rerun update-ca-certificates to undo")
        return 0
    roots = _system_roots()
    if roots is None:
        import certifi

        roots = Path(certifi.where())
    bundle = tls_dir / TRUST_BUNDLE
    partial = bundle.with_suffix(".partial")
    partial.write_bytes(roots.read_bytes().rstrip(b"\n") + b"\n" + ca.read_bytes())
    partial.chmod(0o644)
    partial.replace(bundle)
    print(f"export SSL_CERT_FILE={shlex.quote(str(bundle))}")
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
    up.add_argument(
        "--emulate",
        action="store_true",
        help="emulator mode for CI (or BERTH_EMULATE=1): gpu= runs on CPU where no worker has the GPU, and an "
        "image's Python this machine cannot provide becomes the nearest one it can (the client is warned)",
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
    trust = sub.add_parser(
        "trust",
        help="trust Berth's CA (tunnel certificates) on this host: print an SSL_CERT_FILE export for a bundle "
        "of the system's roots plus Berth's CA, or with --system install it with update-ca-certificates",
    )
    trust.add_argument("--data-dir")
    trust.add_argument("--system", action="store_true", help="install into the system store (root)")
    trust.set_defaults(func=cmd_trust)
