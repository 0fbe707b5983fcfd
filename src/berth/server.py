"""One Berth server process with its local worker: gRPC API, HTTP side and the control loop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from pathlib import Path
from typing import Any

from aiohttp import web
from grpclib.server import Server
from modal_proto.api_grpc import ModalClientBase

from berth.api.audit import audit_rpc
from berth.api.chain import build_mapping
from berth.api.context import Services
from berth.api.service import ModalServicer
from berth.config import CLIENT_HEARTBEAT_S, Settings
from berth.http.web import start_front_door
from berth.listeners import take as take_listeners
from berth.tls import issue_server_cert, server_context
from berth.wiring import build_services, recover
from berth.worker.network import HOST_IP, ServerFirewall

log = logging.getLogger("berth.server")


class _GeneratedService(ModalClientBase):  # type: ignore[misc]
    """Only used to read the generated RPC table (paths, cardinalities, message types)."""


_GeneratedService.__abstractmethods__ = frozenset()


def generated_handlers() -> dict[str, Any]:
    return dict(_GeneratedService().__mapping__())


class _Grpc:
    def __init__(self, services: Services) -> None:
        self._mapping = build_mapping(
            generated_handlers(),
            ModalServicer(services),
            services,
            services.settings.max_request_bytes,
            services.telemetry.rpc,
            lambda caller, rpc, request, status: audit_rpc(services.audit, services.apps, caller, rpc, request, status),
        )

    def __mapping__(self) -> dict[str, Any]:
        return self._mapping


def credentials_path(data_dir: Path) -> Path:
    return data_dir / "credentials.json"


def server_info_path(data_dir: Path) -> Path:
    return data_dir / "server.json"


async def ensure_token(services: Services) -> None:
    """A fresh data dir gets one token; its secret is kept only in credentials.json (mode 0600)."""
    path = credentials_path(services.settings.data_dir)
    if path.exists():
        return
    token_id, secret = await services.accounts.create_token()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"token_id": token_id, "token_secret": secret}, f)


async def serve(settings: Settings, ready: asyncio.Event | None = None) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # Before anything can start a container: they reach the API only once its ports are open to them.
    firewall = await _start_firewall(settings)
    services = await build_services(settings)
    await ensure_token(services)
    await recover(services)
    web_front_door = await start_front_door(
        services.web, settings.container_host, firewall, settings.web_max_body_bytes
    )
    handlers = [_Grpc(services)]
    # The client-facing sockets outlive this process (berth.listeners): a restart keeps clients waiting
    # in their backlog instead of refusing them.
    addrs = [(settings.host, settings.port), (settings.host, settings.effective_http_port)]
    listeners = await asyncio.to_thread(take_listeners, settings.data_dir, addrs)
    grpc_server = Server(handlers)
    await grpc_server.start(sock=listeners.sockets[0])
    # Containers on an isolated network reach the server at container_host (the bridge address).
    extra_hosts = [settings.container_host] if settings.container_host not in (settings.host, "0.0.0.0", "::") else []
    bridge_server = Server(handlers) if extra_hosts else None
    if bridge_server is not None:
        await bridge_server.start(extra_hosts, settings.port)
    socket_server = await _start_socket_server(handlers, settings)
    runner = web.AppRunner(_http_app(services), access_log=None)
    await runner.setup()
    await web.SockSite(runner, listeners.sockets[1]).start()
    for http_host in extra_hosts:
        await web.TCPSite(runner, http_host, settings.effective_http_port).start()
    tls_server = await _start_tls(handlers, runner, settings)
    autoscaler = asyncio.create_task(services.autoscaler.run())
    schedules = asyncio.create_task(services.schedules.run())
    replicas = asyncio.create_task(services.replicas.run())
    sandbox_stops = asyncio.create_task(services.sandboxes.run_stop_requests())
    server_info_path(settings.data_dir).write_text(
        json.dumps({"server_url": settings.server_url, "http_url": settings.http_url, "pid": os.getpid()})
    )
    log.info(
        "berth serving gRPC on %s, HTTP on %s (runtime: %s)", settings.server_url, settings.http_url, settings.runtime
    )
    if settings.app_heartbeat_timeout_s <= CLIENT_HEARTBEAT_S:
        log.warning(
            "BERTH_APP_HEARTBEAT_TIMEOUT=%gs is not longer than the client's %gs heartbeat interval: the ephemeral"
            " apps of live clients are stopped unless they set MODAL_HEARTBEAT_INTERVAL below it",
            settings.app_heartbeat_timeout_s,
            CLIENT_HEARTBEAT_S,
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        log.info("berth shutting down")
        for loop_task in (autoscaler, schedules, replicas, sandbox_stops):
            loop_task.cancel()
        # Let a launch the autoscaler was in finish unwinding before the tasks are stopped.
        await asyncio.gather(autoscaler, schedules, replicas, sandbox_stops, return_exceptions=True)
        await web_front_door.cleanup()
        await services.tasks.shutdown()
        await services.images.shutdown()
        with contextlib.suppress(Exception):
            await services.replicas.leave()  # its containers are stopped: nothing of it is left to hand back
        for server in (grpc_server, bridge_server, socket_server, tls_server):
            if server is not None:
                server.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(server.wait_closed(), 3)
        await runner.cleanup()
        if firewall is not None:
            await asyncio.to_thread(firewall.close)
        await services.notifier.close()
        await services.logs.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(services.metering.settle(), 5)  # the stopped containers' last usage
        await services.stores.close()
        server_info_path(settings.data_dir).unlink(missing_ok=True)
        listeners.release()


async def _start_firewall(settings: Settings) -> ServerFirewall | None:
    """Containers on the bridge may reach this server's API, HTTP side and web endpoints on the host,
    and nothing else there (berth.worker.network). Process-runtime containers share the host's network."""
    if settings.container_host != HOST_IP:
        return None
    firewall = ServerFirewall(settings.data_dir, settings.port, [settings.port, settings.effective_http_port])
    await asyncio.to_thread(firewall.start)
    return firewall


async def _start_tls(handlers: list[_Grpc], runner: web.AppRunner, settings: Settings) -> Server | None:
    """gRPC and the HTTP side again on the TLS address, for workers on other hosts (and clients that
    trust Berth's CA), with a certificate from the data dir's CA."""
    if not settings.tls_host:
        return None
    names = [settings.tls_host, settings.container_host, "localhost", "127.0.0.1"]
    cert, key = await asyncio.to_thread(issue_server_cert, settings.tls_dir, names)
    server = Server(handlers)
    await server.start(settings.tls_host, settings.port, ssl=server_context(cert, key, ["h2"]))
    http_tls = server_context(cert, key, ["http/1.1"])
    await web.TCPSite(runner, settings.tls_host, settings.effective_http_port, ssl_context=http_tls).start()
    log.info(
        "berth serving TLS on https://%s:%d (HTTP https://%s:%d); workers check it with %s",
        settings.tls_host,
        settings.port,
        settings.tls_host,
        settings.effective_http_port,
        settings.tls_dir / "ca.pem",
    )
    return server


async def _start_socket_server(handlers: list[_Grpc], settings: Settings) -> Server | None:
    """The same API on a unix socket, for containers that share the host (see Settings.container_api_url)."""
    if not settings.container_api_url.startswith("unix://"):
        return None
    settings.api_socket.parent.mkdir(parents=True, exist_ok=True)
    settings.api_socket.unlink(missing_ok=True)
    server = Server(handlers)
    await server.start(path=str(settings.api_socket))
    return server


def _http_app(services: Services) -> web.Application:
    from berth.http.app import build_http_app
    from berth.http.dashboard import add_dashboard_routes, add_page_not_found
    from berth.http.workers import add_worker_routes

    app = build_http_app(services.blobs, services.state.volumes, services.metrics_text)
    add_dashboard_routes(app, services, services.dashboard)
    if services.hub is not None:
        heads, snapshots = services.state.volumes.heads, services.images.register_snapshot_layer
        add_worker_routes(app, services.hub, services.join_tokens, services.blobs, heads, snapshots)
    add_page_not_found(app)
    return app
