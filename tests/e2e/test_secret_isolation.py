"""On crun, a running container's secret values never sit in plain text under the data dir."""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

from tests.e2e.conftest import APPS, BerthServer


def _files_containing(root: Path, needle: bytes) -> list[Path]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                if needle in path.read_bytes():
                    found.append(path)
            except OSError:
                continue
    return found


def test_running_container_keeps_secret_values_out_of_the_data_dir(berth_oci: BerthServer) -> None:
    value = "held-" + secrets.token_hex(12)
    proc = subprocess.Popen(
        [sys.executable, "secret_holder.py", value, "holder-" + secrets.token_hex(6)], cwd=APPS, env=berth_oci.env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "RUNNING"  # the container holds the secret in its environment
        assert _files_containing(berth_oci.data_dir, value.encode()) == []
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
        assert out.strip() == value  # the container did receive it
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
