"""Sandbox readiness probes through the stock client, on crun: `Sandbox.create(readiness_probe=Probe.with_tcp(...)
or Probe.with_exec(...))` and `Sandbox.wait_until_ready()`, which returns once the probe first succeeds, raises the
client's TimeoutError when it never does, and ConflictError when the sandbox exits first."""

from __future__ import annotations

import textwrap

from tests.e2e.conftest import BerthServer, last_json, sdk

HEAD = """
import json, time, modal
from modal.exception import *
app = modal.App.lookup({app!r}, create_if_missing=True)
image = modal.Image.debian_slim()
LISTENS = ["python3", "-c", "import socket; socket.create_connection(('127.0.0.1', 8000), timeout=2)"]
"""


def run(server: BerthServer, app: str, body: str, timeout: float = 240) -> dict:  # type: ignore[type-arg]
    return last_json(sdk(server, HEAD.format(app=app) + textwrap.dedent(body), timeout=timeout))


def test_tcp_probe_waits_until_the_sandbox_listens(berth_oci: BerthServer) -> None:
    seen = run(
        berth_oci,
        "sb-probe-tcp",
        """
        out = {}
        server = "sleep 2; exec python3 -m http.server 8000 --bind 127.0.0.1"
        for name, blocked in (("open", False), ("blocked", True)):
            sb = modal.Sandbox.create("bash", "-c", server, app=app, image=image, block_network=blocked,
                                      readiness_probe=modal.Probe.with_tcp(8000))
            t0 = time.monotonic()
            early = sb.exec(*LISTENS).wait()
            sb.wait_until_ready(timeout=60)
            took = time.monotonic() - t0
            out[name] = {"early": early, "took": took, "after": sb.exec(*LISTENS).wait()}
            sb.terminate()
        print(json.dumps(out))
        """,
    )
    for name in ("open", "blocked"):  # blocked: the probe enters the namespace crun made, with only lo
        assert seen[name]["early"] != 0, seen  # nothing listened yet: the wait below had something to wait for
        assert seen[name]["after"] == 0, seen  # and right after it returned, the port accepts
        assert 0.5 < seen[name]["took"] < 30, seen


def test_exec_probe_waits_for_a_file_that_appears_later(berth_oci: BerthServer) -> None:
    seen = run(
        berth_oci,
        "sb-probe-exec",
        """
        sb = modal.Sandbox.create("bash", "-c", "sleep 2; touch /tmp/ready; sleep infinity", app=app, image=image,
                                  readiness_probe=modal.Probe.with_exec("test", "-f", "/tmp/ready", interval_ms=200))
        early = sb.exec("test", "-f", "/tmp/ready").wait()
        t0 = time.monotonic()
        sb.wait_until_ready(timeout=60)
        took = time.monotonic() - t0
        after = sb.exec("test", "-f", "/tmp/ready").wait()
        sb.wait_until_ready(timeout=5)  # once ready, it stays ready: answered at once
        again = time.monotonic() - t0 - took
        sb.terminate()
        print(json.dumps({"early": early, "after": after, "took": took, "again": again}))
        """,
    )
    assert seen["early"] == 1 and seen["after"] == 0, seen
    assert 0.3 < seen["took"] < 30 and seen["again"] < 3, seen


def test_a_probe_that_never_succeeds_gives_the_clients_timeout_error(berth_oci: BerthServer) -> None:
    seen = run(
        berth_oci,
        "sb-probe-never",
        """
        out = {}
        sb = modal.Sandbox.create("sleep", "600", app=app, image=image, readiness_probe=modal.Probe.with_tcp(8000))
        t0 = time.monotonic()
        try:
            sb.wait_until_ready(timeout=3)
        except Exception as exc:
            out["never"] = [type(exc).__module__ + "." + type(exc).__name__, time.monotonic() - t0]
        out["still_running"] = sb.poll()
        sb.terminate()
        plain = modal.Sandbox.create("sleep", "600", app=app, image=image)
        try:
            plain.wait_until_ready(timeout=3)
        except Exception as exc:
            out["no_probe"] = [type(exc).__name__, str(exc)]
        plain.terminate()
        print(json.dumps(out))
        """,
    )
    assert seen["never"][0] == "modal.exception.TimeoutError", seen
    assert 2.5 < seen["never"][1] < 15, seen
    assert seen["still_running"] is None  # a probe that fails does not end the sandbox
    assert seen["no_probe"][0] == "InvalidError" and "readiness_probe" in seen["no_probe"][1], seen


def test_a_sandbox_that_exits_before_it_is_ready_gives_conflict_error(berth_oci: BerthServer) -> None:
    seen = run(
        berth_oci,
        "sb-probe-exits",
        """
        out = {}
        probe = modal.Probe.with_tcp(8000)
        sb = modal.Sandbox.create("bash", "-c", "sleep 2; exit 3", app=app, image=image, readiness_probe=probe)
        t0 = time.monotonic()
        try:
            sb.wait_until_ready(timeout=120)  # still running when asked: answered when it exits
        except Exception as exc:
            out["while_running"] = [type(exc).__name__, str(exc), time.monotonic() - t0]
        out["rc"] = sb.wait(raise_on_termination=False) or sb.returncode
        try:
            sb.wait_until_ready(timeout=120)  # already gone when asked
        except Exception as exc:
            out["after_exit"] = [type(exc).__name__, str(exc)]
        print(json.dumps(out))
        """,
    )
    assert seen["while_running"][0] == "ConflictError" and "exited" in seen["while_running"][1], seen
    assert seen["while_running"][2] < 60, seen
    assert seen["rc"] == 3
    assert seen["after_exit"][0] == "ConflictError", seen
