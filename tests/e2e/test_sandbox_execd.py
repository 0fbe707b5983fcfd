"""The fast exec path on crun (berth.worker.execd): an exec is forked inside the sandbox by berth-execd and has
exactly what the sandbox's entrypoint has (user, capabilities, no_new_privs, seccomp, cgroup, namespaces);
the entrypoint never sees execd's socket; and when execd is gone, execs still run (through `crun exec`)."""

from __future__ import annotations

import textwrap

from tests.e2e.conftest import BerthServer, last_json, sdk

HEAD = """
import json, modal
app = modal.App.lookup("sb-execd", create_if_missing=True)
image = modal.Image.debian_slim()
"""
# What a process has, as /proc shows it: compared between the entrypoint and an exec.
FIELDS = "grep -E '^(Uid|Gid|Groups|CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status"
NAMESPACES = "for n in mnt pid net ipc uts user cgroup; do readlink /proc/self/ns/$n; done"
IDENTITY = f"{FIELDS}; cat /proc/self/cgroup; {NAMESPACES}"


def run(server: BerthServer, body: str) -> dict:  # type: ignore[type-arg]
    return last_json(sdk(server, HEAD + textwrap.dedent(body), timeout=240))


def test_an_exec_has_exactly_what_the_entrypoint_has_and_is_started_by_execd(berth_oci: BerthServer) -> None:
    seen = run(
        berth_oci,
        f"""
        entry = "{{ " + {IDENTITY!r} + "; }} > /tmp/entry; ls -l /proc/$$/fd > /tmp/entry-fds; exec sleep 300"
        sb = modal.Sandbox.create("sh", "-c", entry, app=app, image=image)
        p = sb.exec("sh", "-c", "until [ -s /tmp/entry-fds ]; do sleep 0.05; done; cat /tmp/entry")
        entrypoint = p.stdout.read()
        p.wait()
        p = sb.exec("sh", "-c", {IDENTITY!r})
        execd = sb.exec("sh", "-c", "tr '\\\\0' ' ' < /proc/$PPID/cmdline")
        fds = sb.exec("cat", "/tmp/entry-fds")
        print(json.dumps({{"entry": entrypoint, "exec": p.stdout.read(), "rc": p.wait(),
                          "parent": execd.stdout.read(), "fds": fds.stdout.read()}}))
        sb.terminate()
        """,
    )
    assert seen["rc"] == 0
    assert "NoNewPrivs:\t1" in seen["exec"] and "Seccomp:\t2" in seen["exec"]
    assert seen["exec"] == seen["entry"]  # same ids, capabilities, filter, cgroup and namespaces
    assert seen["parent"].startswith("/__berth/execd --")  # the fast path, not `crun exec`
    assert "socket:" not in seen["fds"]  # execd's end of the socket stays with execd


def test_execs_still_run_after_the_sandbox_kills_execd(berth_oci: BerthServer) -> None:
    seen = run(
        berth_oci,
        """
        sb = modal.Sandbox.create("sleep", "300", app=app, image=image)
        assert sb.exec("true").wait() == 0
        kill = ("for p in /proc/[0-9]*; do case \\"$(tr '\\\\0' ' ' < $p/cmdline)\\" in "
                "/__berth/execd*) kill -9 ${p#/proc/}; echo killed;; esac; done")
        k = sb.exec("sh", "-c", kill)
        killed = k.stdout.read()
        k.wait()
        after = []
        for i in range(3):
            p = sb.exec("sh", "-c", f"echo again {i}; exit {i}")
            after.append([p.stdout.read(), p.wait()])
        print(json.dumps({"killed": killed, "after": after, "running": sb.poll()}))
        sb.terminate()
        """,
    )
    assert seen["killed"] == "killed\n"
    assert seen["after"] == [["again 0\n", 0], ["again 1\n", 1], ["again 2\n", 2]]
    assert seen["running"] is None  # the sandbox itself lives on
