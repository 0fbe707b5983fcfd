"""Settings: the one place that reads the environment."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

# The stock client's AppHeartbeat period (modal config `heartbeat_interval`, MODAL_HEARTBEAT_INTERVAL).
CLIENT_HEARTBEAT_S = 15.0


def _env_list(name: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in os.environ.get(name, "").split(",") if item.strip())


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


def default_runtime() -> str:
    """crun (isolated OCI containers) unless BERTH_RUNTIME names another; `process` is the developer
    option without isolation."""
    return os.environ.get("BERTH_RUNTIME", "crun")


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 50051
    http_port: int = 0  # 0: port + 1
    runtime: str = field(default_factory=lambda: default_runtime())
    # The address containers use to reach the server; the host end of the container network.
    container_host: str = "127.0.0.1"
    worker_slots: int = field(default_factory=lambda: _env_int("BERTH_WORKER_SLOTS", 16))
    default_max_containers: int = field(default_factory=lambda: _env_int("BERTH_MAX_CONTAINERS", 8))
    default_scaledown_s: int = field(default_factory=lambda: _env_int("BERTH_SCALEDOWN_SECONDS", 60))
    # The most a sandbox may write to its own root (its overlay's upper layer, a capped ext4 image).
    sandbox_disk_mb: int = field(default_factory=lambda: _env_int("BERTH_SANDBOX_DISK_MB", 10240))
    # The warm pool of sandbox containers (berth.worker.sandbox_pool): started ahead per recently used image
    # (and cpu/memory), at most this many in all and this much of memory limits; 0 per image: no pool.
    sandbox_pool: int = field(default_factory=lambda: _env_int("BERTH_SANDBOX_POOL", 2))
    sandbox_pool_max: int = field(default_factory=lambda: _env_int("BERTH_SANDBOX_POOL_MAX", 8))
    sandbox_pool_mb: int = field(default_factory=lambda: _env_int("BERTH_SANDBOX_POOL_MB", 4096))
    sandbox_pool_idle_s: float = field(default_factory=lambda: float(_env_int("BERTH_SANDBOX_POOL_IDLE_SECONDS", 600)))
    # The standby pool of function containers (berth.worker.sandbox_pool): this many per recently used image
    # (and cpu/memory), more for a function's buffer_containers, within the sandbox pool's caps; 0: no pool.
    function_pool: int = field(default_factory=lambda: _env_int("BERTH_FUNCTION_POOL", 2))
    # How long a sandbox create waits for a worker slot (idle function containers are retired for it first).
    sandbox_queue_s: float = field(default_factory=lambda: float(_env_int("BERTH_SANDBOX_QUEUE_SECONDS", 300)))
    # How long finished calls, their outputs and app logs are kept (Modal keeps spawned results ~7 days).
    retention_s: float = field(default_factory=lambda: _env_int("BERTH_RETENTION_DAYS", 7) * 86400.0)
    # An ephemeral app whose client sends no heartbeat for this long is stopped (CLIENT_HEARTBEAT_S: every 15 s).
    app_heartbeat_timeout_s: float = field(default_factory=lambda: float(_env_int("BERTH_APP_HEARTBEAT_TIMEOUT", 60)))
    # Fernet key that encrypts secret values at rest; unset: a key file under the data dir, made on first start.
    secrets_key: str | None = field(default_factory=lambda: os.environ.get("BERTH_SECRETS_KEY") or None)
    # Machine-wide cache of image layers and debootstrapped bases, shared by every server on the host.
    image_cache_dir: Path = field(default_factory=lambda: Path(os.environ.get("BERTH_IMAGE_CACHE", "/var/cache/berth")))
    # CA bundle bind-mounted into containers and image builds (egress TLS may be intercepted).
    ca_bundle: str = field(
        default_factory=lambda: os.environ.get("BERTH_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    )
    # Registries pulled without TLS verification (host or host:port, comma-separated); loopback always is.
    insecure_registries: tuple[str, ...] = field(default_factory=lambda: _env_list("BERTH_INSECURE_REGISTRIES"))
    # python-build-standalone archives for Pythons Debian does not carry: a folder URL or a {version} template.
    python_mirror: str = field(default_factory=lambda: os.environ.get("BERTH_PYTHON_MIRROR", ""))
    # Emulator mode, for CI (`berth up --emulate`, BERTH_EMULATE=1): gpu= that no worker has runs on CPU, and an
    # image's Python that this machine cannot provide becomes the nearest one it can; the client is warned.
    emulate: bool = field(default_factory=lambda: os.environ.get("BERTH_EMULATE", "") in ("1", "true", "yes"))
    # `berth server`: containers run on workers that join over the network, none in this process.
    remote_workers: bool = False
    # `berth server --tls`: the address served with TLS (certificates from Berth's CA) for other hosts;
    # `host` then serves local clients in plain on loopback.
    tls_host: str = ""
    # Redis for the contents of dicts and queues and for wake-ups between replicas; unset: all in SQLite.
    redis_url: str = field(default_factory=lambda: os.environ.get("BERTH_REDIS_URL", ""))
    # Where blobs and mount files live: "" for the local directory under data_dir (the default), or an
    # S3-compatible bucket, s3://KEY:SECRET@HOST:PORT/BUCKET[?region=R&scheme=https] (store/s3/location.py).
    blob_url: str = field(default_factory=lambda: os.environ.get("BERTH_BLOBS_URL", ""))
    # PostgreSQL (postgresql://user:password@host:port/db) for the control plane; empty: SQLite in the data dir.
    database_url: str = field(default_factory=lambda: os.environ.get("BERTH_DATABASE_URL", ""))
    # This server among the replicas sharing one database; a restart under the same name takes over at once
    # from its earlier incarnation. Empty: HOSTNAME:PORT.
    replica_name: str = ""
    # The largest request body the web front door takes (413 beyond it, before the body reaches the app).
    web_max_body_bytes: int = field(default_factory=lambda: _env_int("BERTH_WEB_MAX_BODY_BYTES", 4 * 1024**3))
    max_object_bytes: int = 2 * 1024 * 1024
    max_request_bytes: int = 64 * 1024 * 1024

    @property
    def exclusive_database(self) -> bool:
        """SQLite in the data dir: no other server shares it, so whatever the last process left open is dead."""
        return not self.database_url

    @property
    def effective_replica_name(self) -> str:
        return self.replica_name or f"{socket.gethostname()}:{self.port}"

    @property
    def effective_http_port(self) -> int:
        return self.http_port or self.port + 1

    @property
    def db_path(self) -> Path:
        return self.data_dir / "berth.db"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def blob_cache_dir(self) -> Path:
        """This host's copies of files fetched from a remote blob store."""
        return self.data_dir / "blob-cache"

    @property
    def task_dir(self) -> Path:
        return self.data_dir / "tasks"

    @property
    def volume_dir(self) -> Path:
        return self.data_dir / "volumes"

    @property
    def tls_dir(self) -> Path:
        return self.data_dir / "tls"

    @property
    def secrets_key_path(self) -> Path:
        return self.data_dir / "secrets.key"

    @property
    def server_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.effective_http_port}"

    @property
    def container_server_url(self) -> str:
        return f"http://{self.container_host}:{self.port}"

    @property
    def api_socket(self) -> Path:
        return self.data_dir / "run" / "api.sock"

    @property
    def container_api_url(self) -> str:
        """Where task containers call the API. Process-runtime containers share the host, so they use a
        unix socket: far cheaper per call than loopback TCP. Paths over the sun_path limit fall back to TCP."""
        if self.runtime == "process" and len(str(self.api_socket)) < 100:
            return f"unix://{self.api_socket}"
        return self.container_server_url

    @property
    def container_http_url(self) -> str:
        return f"http://{self.container_host}:{self.effective_http_port}"


def default_data_dir() -> Path:
    return Path(os.environ.get("BERTH_DATA_DIR", str(Path.home() / ".berth")))
