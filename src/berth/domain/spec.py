"""What a worker needs to start one task container: the task spec the control plane hands a worker
through the worker port. It names files by content and nothing on the server's disk but volume binds."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from modal_proto import api_pb2

from berth.domain.cluster import ClusterSpec
from berth.domain.gpu import Gpu


@dataclass(frozen=True)
class MountedFile:
    remote_path: str  # absolute path inside the container, e.g. /root/app.py
    sha256: str  # content, fetched by the worker from the blob store
    mode: int = 0o644


@dataclass(frozen=True)
class BindMount:
    """A host directory presented at a path inside the container (volumes)."""

    host_path: Path
    container_path: str  # absolute, e.g. /root/vol
    read_only: bool = False
    # On a shared control plane: the volume and the path within it, which a remote worker mounts from its
    # own copy of the volume (host_path is then the server's, meaningless on the worker's host).
    volume_id: str = ""
    sub_path: str = "."


@dataclass(frozen=True)
class BucketMount:
    """An S3-compatible bucket (modal.CloudBucketMount) presented at a path inside the container; the worker
    mounts it with a FUSE filesystem on its host. The keys come from the mount's secret (none: a public bucket)."""

    bucket: str
    mount_path: str
    endpoint_url: str = ""  # "" = AWS S3
    key_prefix: str = ""  # a "directory" of the bucket, ending in "/"
    read_only: bool = False
    path_style: bool = False  # <endpoint>/<bucket>/<key> rather than <bucket>.<endpoint>/<key>
    access_key_id: str = ""
    secret_access_key: str = ""
    region: str = ""
    requester_pays: bool = False


@dataclass(frozen=True)
class ReadinessProbe:
    """Sandbox.create(readiness_probe=): a TCP port inside the sandbox to connect to, or a command to run in it,
    every interval_ms until it first succeeds."""

    tcp_port: int = 0  # 0: an exec probe
    exec_argv: tuple[str, ...] = ()
    interval_ms: int = 100


@dataclass(frozen=True)
class EgressAllowlist:
    """outbound_cidr_allowlist / outbound_domain_allowlist: everything a sandbox may connect to. Domains are
    resolved by the worker when the sandbox starts."""

    cidrs: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()


@dataclass(frozen=True)
class SandboxSpec:
    """A sandbox task: its image runs this command instead of the modal container entrypoint."""

    sandbox_id: str
    entrypoint: tuple[str, ...] = ()  # empty: the sandbox stays up (sleep) until terminated or timed out
    workdir: str = ""  # "" = the image's working directory
    timeout_s: int = 300
    idle_timeout_s: int = 0  # 0 = none
    block_network: bool = False
    readiness_probe: ReadinessProbe | None = None
    egress: EgressAllowlist | None = None  # None: open (or blocked) network, as block_network says


# The command a sandbox created without one runs: it stays up for execs until it is terminated or times out.
SANDBOX_IDLE_COMMAND = ("sleep", "infinity")


@dataclass(frozen=True)
class TaskSpec:
    task_id: str
    function_id: str
    app_id: str
    container_arguments: bytes  # api_pb2.ContainerArguments
    server_url: str
    secret: str
    env: dict[str, str] = field(default_factory=dict)
    files: list[MountedFile] = field(default_factory=list)
    binds: list[BindMount] = field(default_factory=list)
    memory_mb: int = 0
    cpu: float = 0.0
    image_id: str = ""  # the function's image; OCI runtimes run on its built layers
    gpu_requests: tuple[tuple[str, int], ...] = ()  # gpu= as (TYPE, count), best first (fallbacks after)
    gpus: tuple[Gpu, ...] = ()  # what the worker gave it, set when the container starts
    sandbox: SandboxSpec | None = None  # set for a sandbox's task
    cluster: ClusterSpec | None = None  # set for a member of a gang-scheduled cluster (@modal.clustered)
    source_ip: str = ""  # a proxy's address its outbound connections leave from; "" for the worker's own
    buckets: list[BucketMount] = field(default_factory=list)  # modal.CloudBucketMount

    @property
    def command(self) -> tuple[str, ...]:
        """What the container runs: a sandbox's command, or the modal container entrypoint."""
        if self.sandbox is None:
            return ("python", "-m", "modal._container_entrypoint")
        return self.sandbox.entrypoint or SANDBOX_IDLE_COMMAND


@dataclass
class BuiltArguments:
    """What a function's containers get: their ContainerArguments, environment, files and volumes."""

    arguments: api_pb2.ContainerArguments
    env: dict[str, str]
    files: list[MountedFile]
    binds: list[BindMount] = field(default_factory=list)
    source_ip: str = ""  # its proxy's address (services/proxies.py), or "" for the worker's own
    buckets: list[BucketMount] = field(default_factory=list)


@dataclass(frozen=True)
class WorkerCapacity:
    """A worker's capacity and what its containers hold of it now (for metrics)."""

    worker_id: str
    slots: int
    slots_used: int
    cpu: float
    cpu_used: float
    memory_mb: int
    memory_used_mb: int


@dataclass(frozen=True)
class WorkerInventory:
    """What a worker reports when it joins: its capacity, and the tasks it still runs (after a reconnect)."""

    worker_id: str
    slots: int
    cpu: float
    memory_mb: int
    runtime: str
    builds_images: bool
    gpus: list[Gpu] = field(default_factory=list)
    running: list[str] = field(default_factory=list)
    container_http_url: str = ""  # where this worker's containers reach the server's HTTP side (its relay)
    router_url: str = ""  # where clients reach this worker's TaskCommandRouter (sandbox exec and stdio)
    tunnel_host: str = ""  # the address clients reach this worker's tunnels at (its certificate must name it)


@dataclass(frozen=True)
class TunnelRequest:
    """One port of a task's container to expose on its worker's host (a sandbox's open ports, modal.forward)."""

    port: int  # inside the container
    unencrypted: bool = False  # also a plain TCP listener beside the TLS one
    h2: bool = False  # TLS that offers HTTP/2 in ALPN (h2_ports, forward(h2_enabled=True))
    allowed_cidrs: tuple[str, ...] = ()  # peers that may connect (inbound_cidr_allowlist); empty: any


@dataclass(frozen=True)
class TunnelAddress:
    """Where clients reach one exposed port: TLS at host:port, plain TCP at unencrypted_host:unencrypted_port."""

    container_port: int
    host: str
    port: int
    unencrypted_host: str = ""
    unencrypted_port: int = 0
