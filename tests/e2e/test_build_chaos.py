"""The server killed with SIGKILL in the middle of an image build (crun): the client's run completes or fails
clearly, and the next run gets the whole image, built again, never the half-built layer."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from berth.worker.runtime.oci import BUNDLE_ROOT
from tests.e2e.conftest import APPS, BIN, modal, start_server, stop_server, wait_for
from tests.reliability.record import note

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the crun runtime needs root")

BUILDS = Path(os.environ.get("BERTH_IMAGE_CACHE", "/var/cache/berth")) / "layers" / "tmp"


def _builds() -> set[str]:
    return {p.name for p in BUILDS.iterdir()} if BUILDS.is_dir() else set()


def _sweep_builds(names: set[str]) -> None:
    """What the killed server's build left on the host: its step's container, overlay, network namespace and
    scratch directory (a killed server cannot clean up after itself; the test must)."""
    for name in names:
        subprocess.run(["crun", "delete", "--force", f"berth-build-{name}"], capture_output=True)
        merged = BUILDS / name / "merged"
        if os.path.ismount(merged):
            subprocess.run(["umount", "-l", str(merged)], capture_output=True)
        subprocess.run(["ip", "netns", "delete", f"berth-berth-build-{name}"], capture_output=True)
        shutil.rmtree(BUILDS / name, ignore_errors=True)
        shutil.rmtree(BUNDLE_ROOT / f"berth-build-{name}", ignore_errors=True)


def test_a_server_killed_mid_image_build_never_serves_a_half_built_image(tmp_path: Path) -> None:
    builds_before, killed_builds = _builds(), set()
    data_dir = tmp_path / "data"
    server = start_server(data_dir, extra_args=["--runtime", "crun"])
    mark = uuid.uuid4().hex[:12]
    env = {**server.env, "CHAOS_MARK": mark}
    run = subprocess.Popen(
        [str(BIN / "modal"), "run", "build_chaos.py"],
        cwd=APPS,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(run.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        wait_for(
            lambda: any(f"building-{mark}" in x for x in lines) or run.poll() is not None, "the step to start", 900
        )
        assert run.poll() is None, "".join(lines)
        time.sleep(2)  # inside the step's sleep: its layer is half made
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait()
        killed_builds = _builds() - builds_before  # the killed server's, left half made
        time.sleep(1)
        server = start_server(data_dir, extra_args=["--runtime", "crun"], port=server.port)
        rc = run.wait(600)
        reader.join(10)
        first = "".join(lines)
        assert rc == 0 and f"BUILT {mark},{mark}" in first or rc != 0 and "restarted while this image" in first, first
        again = modal(server, "run", "build_chaos.py", env={"CHAOS_MARK": mark}, timeout=900)
        assert again.returncode == 0 and f"BUILT {mark},{mark}" in again.stdout, again.output
        note(
            "server SIGKILL mid-image-build (crun)",
            faults=1,
            outputs_checked=2,
            errors=0 if rc == 0 else 1,
            outcome=(
                "the run completed"
                if rc == 0
                else "the run failed: " + next(x.strip() for x in first.splitlines() if "restarted while" in x)[:150]
            )
            + "; the next run got the whole image",
        )
    finally:
        if run.poll() is None:
            run.kill()
        stop_server(server)
        _sweep_builds(killed_builds)
