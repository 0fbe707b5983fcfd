"""Tunnels on the control plane: what a sandbox's definition asks to expose (open_ports and
inbound_cidr_allowlist), and modal.forward() from inside a container (TunnelStart / TunnelStop, for the
caller's own task). The listeners themselves live on the worker that runs the task (berth.worker.tunnels),
reached through the worker port; they close with the task."""

from __future__ import annotations

import ipaddress

from modal_proto import api_pb2

from berth.domain.spec import TunnelAddress, TunnelRequest
from berth.errors import InvalidArgument
from berth.workers.port import TunnelsUnavailable, WorkerPort


def requested(definition: api_pb2.Sandbox) -> list[TunnelRequest]:
    """One request per open port (encrypted_ports, unencrypted_ports, h2_ports), each with the inbound allowlist."""
    cidrs = tuple(definition.inbound_cidr_allowlist)
    for cidr in cidrs:
        try:
            ipaddress.ip_network(cidr.strip(), strict=False)
        except ValueError as exc:
            raise InvalidArgument(f"inbound_cidr_allowlist: {cidr!r} is not a CIDR block ({exc})") from exc
    ports = [p.port for p in definition.open_ports.ports]
    repeated = sorted({p for p in ports if ports.count(p) > 1})
    if repeated:
        raise InvalidArgument(f"Sandbox ports may be opened once each; repeated: {', '.join(map(str, repeated))}")
    return [
        TunnelRequest(p.port, p.unencrypted, p.tunnel_type == api_pb2.TUNNEL_TYPE_H2, cidrs)
        for p in definition.open_ports.ports
    ]


async def open_all(worker: WorkerPort, task_id: str, requests: list[TunnelRequest]) -> list[TunnelAddress]:
    return [await open_one(worker, task_id, request) for request in requests]


async def open_one(worker: WorkerPort, task_id: str, request: TunnelRequest) -> TunnelAddress:
    try:
        return await worker.open_tunnel(task_id, request)
    except TunnelsUnavailable as exc:
        raise InvalidArgument(str(exc)) from exc


async def forward(worker: WorkerPort, task_id: str | None, req: api_pb2.TunnelStartRequest) -> TunnelAddress:
    """TunnelStart: modal.forward(port, unencrypted=, h2_enabled=) exposes a port of the calling container's own
    task (its identity is its task secret); such a tunnel has no inbound allowlist."""
    if task_id is None:
        raise InvalidArgument("Forwarding ports only works inside a Modal container")
    if req.unencrypted and req.tunnel_type == api_pb2.TUNNEL_TYPE_H2:
        raise InvalidArgument("H2 can only be used with encrypted ports")
    request = TunnelRequest(req.port, req.unencrypted, req.tunnel_type == api_pb2.TUNNEL_TYPE_H2)
    return await open_one(worker, task_id, request)


async def stop_forward(worker: WorkerPort, task_id: str | None, port: int) -> bool:
    if task_id is None:
        raise InvalidArgument("Forwarding ports only works inside a Modal container")
    return await worker.close_tunnel(task_id, port)


def to_proto(address: TunnelAddress) -> api_pb2.TunnelData:
    return api_pb2.TunnelData(
        host=address.host,
        port=address.port,
        unencrypted_host=address.unencrypted_host,
        unencrypted_port=address.unencrypted_port,
        container_port=address.container_port,
    )
