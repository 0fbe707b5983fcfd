"""`berth up --runtime runsc`: functions run under gVisor (ptrace platform, runsc started inside the
container's own network namespace), see their image, reach the Berth API, and keep the hardening and
limits of the crun containers. scripts/setup-host.sh installs runsc, so CI runs these."""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import BerthServer, modal, start_server, stop_server
from tests.e2e.test_hardening import CAP_NET_RAW, CAP_SYS_ADMIN, call
from tests.e2e.test_isolation import _task_traces

RUNSC_ROOT = "/run/berth/runsc"


@pytest.fixture(scope="module")
def berth_runsc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BerthServer]:
    if os.geteuid() != 0:
        pytest.skip("the runsc runtime needs root")
    if shutil.which("runsc") is None:
        pytest.skip("runsc (gVisor) is not installed: run scripts/setup-host.sh (apt package runsc)")
    server = start_server(tmp_path_factory.mktemp("berth-runsc") / "data", extra_args=["--runtime", "runsc"])
    yield server
    stop_server(server)


def test_function_runs_under_gvisor_and_sees_its_image(berth_runsc: BerthServer) -> None:
    seen = call(berth_runsc, "kernel")  # it returns at all: the container reached the Berth API
    # gVisor's kernel reports a fixed Linux 4.4.0 of its own, never the host's (syslog, hence dmesg, is
    # denied by the seccomp profile).
    assert seen["release"] == "4.4.0" != os.uname().release
    assert "#1 SMP Sun Jan 10 15:06:54 PST 2016" in str(seen["version"])
    assert "bookworm" in str(seen["os_release"]) and seen["debian_version"] is True  # the image's files
    assert str(seen["python"]).startswith("3.11")
    assert str(seen["server_url"]).startswith("http://172.21.0.1:")  # over its own network namespace
    assert int(str(seen["pid"])) < 100


def test_hardening_holds_under_gvisor(berth_runsc: BerthServer, tmp_path: Path) -> None:
    marker = tmp_path / "host-only-marker"
    marker.write_text("the host's")
    seen = call(berth_runsc, "probe", [str(marker)])
    assert seen["seccomp"] == "2"  # the same profile, applied by gVisor's kernel (--oci-seccomp)
    caps = int(str(seen["cap_eff"]))
    assert not caps & (1 << CAP_SYS_ADMIN) and not caps & (1 << CAP_NET_RAW)
    assert seen["unshare_user_ns"] == errno.EPERM
    assert seen["mount"] == errno.EPERM
    assert seen["init_module"] == errno.EPERM
    assert "modal._container_entrypoint" in str(seen["init_cmdline"])
    assert seen["host_paths"] == {str(marker): False}


def test_memory_limit_and_cleanup_under_gvisor(berth_runsc: BerthServer) -> None:
    big = modal(berth_runsc, "run", "isolation.py", "--mb", "512", timeout=600)
    assert big.returncode != 0
    assert "exceeded its memory limit of 128 MiB" in big.output
    small = modal(berth_runsc, "run", "isolation.py", "--mb", "8", timeout=600)
    assert small.returncode == 0, small.output
    assert "hog=8" in small.stdout
    # Once the app has stopped, its sandboxes, mounts and namespaces are gone.
    with sqlite3.connect(berth_runsc.data_dir / "berth.db") as db:
        tasks = {row[0] for row in db.execute("SELECT task_id FROM tasks WHERE state = 'stopped'")}
    assert tasks
    listed = subprocess.run(["runsc", "--root", RUNSC_ROOT, "list", "-quiet"], capture_output=True, text=True).stdout
    assert not [cid for cid in listed.split() if cid.removeprefix("berth-") in tasks]
    assert _task_traces(berth_runsc.data_dir, tasks) == []
