"""`berth server | worker | join-token`: a control plane with no local worker, workers that join it over the
network, and the tokens that let them join."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from berth.cli.server_cmds import data_dir_of, setup_logging
from berth.config import Settings, default_runtime

if TYPE_CHECKING:
    from berth.worker.network import ServerFirewall


def _listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected ADDR:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def cmd_server(args: argparse.Namespace) -> int:
    from berth.server import serve

    setup_logging(args.verbose)
    host, port = args.listen
    tls_host = ""
    if args.tls:
        if host in ("127.0.0.1", "localhost", "::1"):
            print(
                "berth: --tls serves other hosts: give --listen an address other than 127.0.0.1, which keeps "
                f"serving local clients in plain HTTP (127.0.0.1:{port})",
                file=sys.stderr,
            )
            return 2
        host, tls_host = "127.0.0.1", host
    settings = Settings(
        data_dir=data_dir_of(args),
        host=host,
        port=port,
        runtime="remote",
        container_host=args.advertise or host,
        remote_workers=True,
        tls_host=tls_host,
        replica_name=args.replica_name or "",
    )
    engines = {"database_url": args.database, "redis_url": args.redis, "blob_url": args.blobs}
    settings = replace(settings, **{k: v for k, v in engines.items() if v})
    try:
        asyncio.run(serve(settings))
    except OSError as exc:
        print(f"berth: cannot start the server: {exc}", file=sys.stderr)
        return 1
    return 0


def server_http_url(server_url: str, http_url: str | None) -> str:
    """The server's HTTP side: the gRPC port + 1 on the same host unless told."""
    if http_url is None:
        parts = urlsplit(server_url)
        http_url = f"{parts.scheme}://{parts.hostname}:{(parts.port or 50051) + 1}"
    return http_url.rstrip("/")


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or 443


async def _run_worker(args: argparse.Namespace) -> int:
    from berth.tls import client_context
    from berth.worker.assemble import local_worker
    from berth.worker.files import HttpFiles
    from berth.worker.link import JoinRefused, WorkerLink
    from berth.worker.relay import Relay
    from berth.worker.snapshot_upload import RemoteSnapshots
    from berth.worker.volumes import VolumeCopies

    settings = Settings(data_dir=data_dir_of(args), runtime=args.runtime, worker_slots=args.slots)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    servers = [url.strip() for url in args.server.split(",") if url.strip()]
    https = [server_http_url(url, args.http if len(servers) == 1 else None) for url in servers]
    hubs = ["ws" + http.removeprefix("http") + "/workers/connect" for http in https]  # ws:// or wss://
    secure = servers[0].startswith("https://")
    ca = Path(args.ca) if args.ca else None
    if secure and ca is None:
        print(
            "berth: an https server needs --ca (its DATA_DIR/tls/ca.pem) unless its certificate is public",
            file=sys.stderr,
        )
    tls = client_context(ca) if secure else None
    # This host's containers call the server through local relays (plain on loopback, TLS upstream), which
    # follow the worker to whichever server replica it is joined to.
    grpc_ups = [_host_port(url) for url in servers]
    http_ups = [_host_port(url) for url in https]
    isolated = args.runtime != "process"
    relay_host = "127.0.0.1"
    if isolated:
        from berth.worker.network import HOST_IP

        relay_host = HOST_IP  # OCI containers reach this host only at their bridge's address
    relays = [
        Relay(grpc_ups[0], client_context(ca, ["h2"]) if secure else None, relay_host),
        Relay(http_ups[0], client_context(ca, ["http/1.1"]) if secure else None, relay_host),
    ]
    firewall = await _isolate_containers(settings.data_dir) if isolated else None
    for relay in relays:
        await relay.start()
    if firewall is not None:
        for relay in relays:
            await asyncio.to_thread(firewall.allow, relay.port)

    def switch(index: int) -> None:
        relays[0].retarget(grpc_ups[index])
        relays[1].retarget(http_ups[index])

    link = WorkerLink(
        hubs, relays[0].url, args.join_token, args.name, tls=tls, container_http_url=relays[1].url, on_switch=switch
    )
    # Mounted files come through the HTTP relay too, from the replica the worker is joined to.
    files = HttpFiles(relays[1].url, args.join_token, settings.data_dir / "files")
    link.worker = local_worker(settings, files, link.on_output, link.on_exit)
    link.worker.meter_usage(link.on_usage)
    link.volumes = VolumeCopies(relays[1].url, args.join_token, settings.data_dir / "volumes", files)
    link.worker.router.reload_volumes = link.volumes.reload_task
    link.worker.publish_snapshots(RemoteSnapshots(relays[1].url, args.join_token))
    # The sandbox command router: clients connect to it directly, at the address this host is reached at.
    router_host, router_port = args.router_listen
    advertise = args.advertise or _facing_address(grpc_ups[0][0] or "127.0.0.1")
    link.worker.router_address(router_host, advertise)
    await link.worker.start_router(router_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await link.run(stop)
    except JoinRefused as exc:
        print(f"berth: {exc}", file=sys.stderr)
        return 1
    finally:
        await link.worker.shutdown()
        for relay in relays:
            await relay.close()
        if firewall is not None:
            await asyncio.to_thread(firewall.close)
    return 0


async def _isolate_containers(data_dir: Path) -> ServerFirewall:
    """The same isolation `berth up` gives its containers, set up by the worker for its own host: the bridge,
    NAT, the shared chains (no other containers, no private networks, no host ports), and a chain of this
    worker's own that opens only its relays to them, the one way its containers reach the control plane."""
    from berth.worker.network import ServerFirewall

    firewall = ServerFirewall(data_dir, 0, [])
    await asyncio.to_thread(firewall.start)
    return firewall


def _facing_address(server_host: str) -> str:
    """This host's address on the route to the server (loopback for a server on this host)."""
    import socket

    if server_host in ("localhost", "127.0.0.1", "::1"):
        return "127.0.0.1"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((server_host, 9))
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"


def cmd_worker(args: argparse.Namespace) -> int:
    setup_logging(args.verbose)
    return asyncio.run(_run_worker(args))


async def _join_tokens(args: argparse.Namespace) -> int:
    from berth.clock import SystemClock
    from berth.errors import BerthError
    from berth.services.join_tokens import JoinTokens
    from berth.store.factory import open_stores

    stores = await open_stores(Settings(data_dir=data_dir_of(args)))
    tokens = JoinTokens(stores.core, SystemClock())
    try:
        if args.action == "create":
            print(await tokens.create())
            print("Start a worker with: berth worker --server URL --join-token <the line above>", file=sys.stderr)
        else:
            await tokens.revoke(args.token_id)
            print(f"revoked {args.token_id}")
        return 0
    except BerthError as exc:
        print(f"berth: {exc.message}", file=sys.stderr)
        return 1
    finally:
        await stores.close()


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    server = sub.add_parser("server", help="run a control plane whose containers run on joined workers")
    server.add_argument("--data-dir")
    server.add_argument("--listen", type=_listen, default=("127.0.0.1", 50051), help="ADDR:PORT for gRPC (HTTP: +1)")
    server.add_argument("--advertise", help="the address workers reach this server at (default: the --listen one)")
    server.add_argument(
        "--tls",
        action="store_true",
        help="serve --listen with TLS from Berth's own CA (DATA_DIR/tls/ca.pem, for workers' --ca); local clients "
        "keep plain HTTP on 127.0.0.1",
    )
    server.add_argument("--database", help="PostgreSQL URL for the control plane (default: $BERTH_DATABASE_URL)")
    server.add_argument(
        "--redis", help="Redis URL for dict and queue contents and wake-ups (default: $BERTH_REDIS_URL)"
    )
    server.add_argument(
        "--blobs", help="s3://KEY:SECRET@HOST:PORT/BUCKET for blobs and mounts (default: $BERTH_BLOBS_URL)"
    )
    server.add_argument(
        "--replica-name",
        help="this server among replicas sharing the database (default HOSTNAME:PORT); a restart under the same "
        "name hands back at once what its containers held",
    )
    server.add_argument("-v", "--verbose", action="store_true")
    server.set_defaults(func=cmd_server)
    worker = sub.add_parser("worker", help="join a `berth server` and run its containers on this host")
    worker.add_argument(
        "--server",
        required=True,
        help="the server's gRPC URL, as clients use it; with several replicas, their URLs separated by commas "
        "(the worker joins the first it reaches and moves on when it loses it)",
    )
    worker.add_argument("--http", help="the server's HTTP URL (default: the gRPC port + 1)")
    worker.add_argument("--join-token", required=True)
    worker.add_argument("--ca", help="the server's CA certificate (its DATA_DIR/tls/ca.pem), for an https server")
    worker.add_argument("--data-dir")
    worker.add_argument("--name", help="this worker's id (default: the host name)")
    worker.add_argument("--slots", type=int, default=16, help="containers this worker runs at once")
    worker.add_argument("--runtime", default=default_runtime(), choices=["process", "crun", "runc", "runsc"])
    worker.add_argument(
        "--router-listen",
        type=_listen,
        default=("0.0.0.0", 0),
        help="ADDR:PORT of this worker's sandbox command router (default: any free port)",
    )
    worker.add_argument(
        "--advertise",
        help="the address clients reach this worker's command router at (default: the one facing the server)",
    )
    worker.add_argument("-v", "--verbose", action="store_true")
    worker.set_defaults(func=cmd_worker)
    tokens = sub.add_parser("join-token", help="tokens that let workers join this server")
    actions = tokens.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create a join token and print it")
    create.add_argument("--data-dir")
    create.set_defaults(func=lambda a: asyncio.run(_join_tokens(a)))
    revoke = actions.add_parser("revoke", help="revoke a join token: workers using it can no longer join")
    revoke.add_argument("token_id")
    revoke.add_argument("--data-dir")
    revoke.set_defaults(func=lambda a: asyncio.run(_join_tokens(a)))
