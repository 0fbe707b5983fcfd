"""Starts a throwaway PostgreSQL in a directory: a fresh cluster (initdb) listening on 127.0.0.1 at a
free port and on a unix socket in that directory, tuned for speed over durability (fsync off). Used by
the contract suite and by scripts that start a local cluster. Binaries come from Debian's postgresql
package (scripts/setup-services.sh)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SETUP_HINT = "install PostgreSQL with scripts/setup-services.sh (as root)"
# PostgreSQL refuses to run as root; as root we run it as the Debian package's system user.
_SYSTEM_USER = "postgres"


class PostgresUnavailable(RuntimeError):
    """PostgreSQL is not installed or would not start."""


def find_bin_dir() -> Path:
    """The newest /usr/lib/postgresql/N/bin (Debian), else the directory of `initdb` on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parent.parent.name))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    raise PostgresUnavailable(f"no PostgreSQL binaries (initdb) found: {SETUP_HINT}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@dataclass
class LocalPostgres:
    """A running instance. `url` connects as the superuser `berth` to the database `postgres`."""

    root: Path
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def socket_dir(self) -> Path:
        return self.root / "sock"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://berth@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        """Fast shutdown (SIGINT: roll back open transactions, disconnect clients), then wait."""
        if self.proc.poll() is None:
            self.proc.send_signal(2)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def _run_as() -> str | None:
    return _SYSTEM_USER if os.geteuid() == 0 else None


def _prepare(root: Path) -> None:
    (root / "sock").mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return
    shutil.chown(root, _SYSTEM_USER, _SYSTEM_USER)
    shutil.chown(root / "sock", _SYSTEM_USER, _SYSTEM_USER)
    # The system user must be able to reach the directory; a 0700 parent owned by root would stop it.
    probe = subprocess.run(["runuser", "-u", _SYSTEM_USER, "--", "test", "-w", str(root)], capture_output=True)
    if probe.returncode != 0:
        raise PostgresUnavailable(f"{root} is not writable by the user {_SYSTEM_USER!r}; use a directory it can reach")


def start(root: Path, *, timeout_s: float = 60.0) -> LocalPostgres:
    """initdb in ROOT/data (unless already there) and start postgres; returns once it accepts connections."""
    bin_dir = find_bin_dir()
    _prepare(root)
    data = root / "data"
    if not (data / "PG_VERSION").exists():
        init = subprocess.run(
            [bin_dir / "initdb", "-D", data, "-U", "berth", "--auth=trust", "-E", "UTF8", "--no-sync", "--no-locale"],
            capture_output=True,
            user=_run_as(),
            group=_run_as(),
        )
        if init.returncode != 0:
            raise PostgresUnavailable(f"initdb failed: {init.stderr.decode(errors='replace')[-2000:]}")
    port = free_port()
    settings = ["listen_addresses=127.0.0.1", "fsync=off", "synchronous_commit=off", "full_page_writes=off"]
    args: list[str | Path] = [bin_dir / "postgres", "-D", data, "-p", str(port), "-k", root / "sock"]
    for setting in [*settings, "max_connections=200"]:
        args += ["-c", setting]
    log = open(root / "postgres.log", "ab")  # noqa: SIM115 - the server process keeps writing to it
    proc = subprocess.Popen(args, stdout=log, stderr=log, user=_run_as(), group=_run_as())
    log.close()
    server = LocalPostgres(root, port, proc)
    _wait_ready(server, bin_dir, timeout_s)
    return server


def _wait_ready(server: LocalPostgres, bin_dir: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise PostgresUnavailable(f"postgres exited: {(server.root / 'postgres.log').read_text()[-2000:]}")
        ready = subprocess.run(
            [bin_dir / "pg_isready", "-q", "-h", "127.0.0.1", "-p", str(server.port), "-U", "berth"],
            capture_output=True,
        )
        if ready.returncode == 0:
            return
        time.sleep(0.1)
    server.stop()
    raise PostgresUnavailable(f"postgres did not accept connections within {timeout_s:.0f}s")
