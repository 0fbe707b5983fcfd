"""On crun, a running container's secret values never sit in plain text under the data dir."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

from tests.e2e.conftest import APPS, BerthServer


def _files_containing(root: Path, needle: bytes, since: float) -> list[Path]:
    """Files on disk under root, changed since `since`, holding needle. A file whose inode last changed
    before the needle existed cannot hold it (userspace cannot set ctime back), so the image layers the
    shared server built earlier are not read again. Container root filesystems mounted below root are the
    containers' own view, not files Berth wrote, and they change while we walk: skip mount points."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not os.path.ismount(os.path.join(dirpath, d))]
        for name in filenames:
            path = Path(dirpath, name)
            try:
                if path.is_symlink() or path.stat().st_ctime < since:
                    continue
                if needle in path.read_bytes():
                    found.append(path)
            except OSError:
                continue
    return found


def test_running_container_keeps_secret_values_out_of_the_data_dir(berth_oci: BerthServer) -> None:
    since = time.time() - 1  # ctime's granularity: the clock tick
    value = "held-" + secrets.token_hex(12)
    proc = subprocess.Popen(
        [sys.executable, "secret_holder.py", value, "holder-" + secrets.token_hex(6)],
        cwd=APPS,
        env=berth_oci.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "RUNNING"  # the container holds the secret in its environment
        assert _files_containing(berth_oci.data_dir, value.encode(), since) == []
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
        assert out.strip() == value  # the container did receive it
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
