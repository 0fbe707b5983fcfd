"""Sandboxes (V2) through the stock client: create, wait, terminate, timeouts, lookups, exec through the
worker's command router, the filesystem API, and the errors Modal's client raises for bad input. Most run on
crun (isolated containers); a few run on the process runtime too."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.e2e.conftest import APPS, BerthServer, last_json, modal, sdk, start_server, stop_server, wait_for

HEAD = """
import json, time, modal
from modal.exception import *
app = modal.App.lookup({app!r}, create_if_missing=True)
image = modal.Image.debian_slim()
"""


def run(server: BerthServer, app: str, body: str, timeout: float = 240) -> dict:  # type: ignore[type-arg]
    return last_json(sdk(server, HEAD.format(app=app) + textwrap.dedent(body), timeout=timeout))


def test_sandbox_runs_its_command_and_reports_its_exit_code_and_output(berth_oci: BerthServer) -> None:
    seen = run(
        berth_oci,
        "sb-lifecycle",
        """
        sb = modal.Sandbox.create("bash", "-c", "echo out; echo err >&2; sleep 1; exit 3", app=app, image=image)
        running = sb.poll()
        sb.wait()
        cat = modal.Sandbox.create("cat", app=app, image=image)
        cat.stdin.write(b"to the entrypoint\\n")
        cat.stdin.write_eof()
        cat.stdin.drain()
        cat.wait()
        print(json.dumps({"id": sb.object_id, "running": running, "rc": sb.returncode, "poll": sb.poll(),
                          "out": sb.stdout.read(), "err": sb.stderr.read(), "cat": cat.stdout.read(),
                          "cat_rc": cat.returncode}))
        """,
    )
    assert seen["cat"] == "to the entrypoint\n" and seen["cat_rc"] == 0
    assert seen["running"] is None and seen["rc"] == 3 and seen["poll"] == 3
    assert seen["out"] == "out\n" and seen["err"] == "err\n"
    assert seen["id"].startswith("sb-") and len(seen["id"]) != 3 + 22  # not a V1 id: the client routes by shape


def test_terminate_gives_137_and_timeout_gives_124(berth_oci: BerthServer) -> None:
    seen = run(
        berth_oci,
        "sb-ends",
        """
        sb = modal.Sandbox.create(app=app, image=image)  # no command: it stays up
        assert sb.poll() is None
        sb.terminate()
        sb.wait(raise_on_termination=False)
        terminated = sb.returncode
        t0 = time.monotonic()
        short = modal.Sandbox.create("sleep", "600", app=app, image=image, timeout=2)
        try:
            short.wait()
            raised = None
        except SandboxTimeoutError as exc:
            raised = type(exc).__name__
        print(json.dumps({"terminated": terminated, "timeout_rc": short.returncode, "raised": raised,
                          "took": time.monotonic() - t0}))
        """,
    )
    assert seen["terminated"] == 137
    assert seen["timeout_rc"] == 124 and seen["raised"] == "SandboxTimeoutError"
    assert seen["took"] < 30


def test_idle_timeout_ends_an_idle_sandbox_but_not_a_busy_one(berth_oci: BerthServer) -> None:
    seen = run(
        berth_oci,
        "sb-idle",
        """
        sb = modal.Sandbox.create(app=app, image=image, idle_timeout=2)
        busy = sb.exec("sleep", "4")  # longer than the idle timeout: the sandbox stays up for it
        busy_rc = busy.wait()
        alive_after_busy = sb.poll() is None
        t0 = time.monotonic()
        try:
            sb.wait()
        except SandboxTimeoutError:
            pass
        print(json.dumps({"busy_rc": busy_rc, "alive": alive_after_busy, "rc": sb.returncode,
                          "idle_for": time.monotonic() - t0}))
        """,
    )
    assert seen["busy_rc"] == 0 and seen["alive"] is True
    assert seen["rc"] == 124 and seen["idle_for"] < 20


def test_exec_text_binary_lines_stdin_env_workdir_and_secrets(berth_oci: BerthServer) -> None:
    seen = run(
        berth_oci,
        "sb-exec",
        """
        sb = modal.Sandbox.create(app=app, image=image)
        p = sb.exec("sh", "-c", "echo $FOO $S; pwd", env={"FOO": "bar"}, workdir="/tmp",
                    secrets=[modal.Secret.from_dict({"S": "sec"})])
        text = p.stdout.read()
        p = sb.exec("printf", "\\\\000\\\\377\\\\001", text=False)
        binary = list(p.stdout.read())
        p = sb.exec("cat")
        p.stdin.write(b"abc\\n"); p.stdin.write(b"def\\n"); p.stdin.write_eof(); p.stdin.drain()
        echoed, cat_rc = p.stdout.read(), p.wait()
        p = sb.exec("bash", "-c", "for i in 1 2 3; do echo line$i; sleep 0.5; done", bufsize=1)
        t0, lines = time.monotonic(), []
        for line in p.stdout:
            lines.append([line, round(time.monotonic() - t0, 1)])
        p = sb.exec("sh", "-c", "echo to-err >&2; exit 5")
        err, rc = p.stderr.read(), p.wait()
        sb.terminate()
        print(json.dumps({"text": text, "binary": binary, "echoed": echoed, "cat_rc": cat_rc, "lines": lines,
                          "err": err, "rc": rc}))
        """,
    )
    assert seen["text"] == "bar sec\n/tmp\n"
    assert seen["binary"] == [0, 255, 1]
    assert seen["echoed"] == "abc\ndef\n" and seen["cat_rc"] == 0
    assert [x[0] for x in seen["lines"]] == ["line1\n", "line2\n", "line3\n"]
    assert seen["lines"][-1][1] - seen["lines"][0][1] >= 0.8  # they came as they were written
    assert seen["err"] == "to-err\n" and seen["rc"] == 5


def test_volumes_workdir_cpu_memory_and_blocked_network(berth_oci: BerthServer) -> None:
    seen = run(
        berth_oci,
        "sb-volumes",
        """
        vol = modal.Volume.from_name("sb-vol", create_if_missing=True)
        writer = modal.Sandbox.create("sh", "-c", "echo kept > /data/note; pwd", app=app, image=image,
                                      volumes={"/data": vol}, workdir="/tmp", cpu=0.5, memory=256)
        writer.wait()
        where = writer.stdout.read()
        reader = modal.Sandbox.create(app=app, image=image, volumes={"/data": vol}, block_network=True)
        note = reader.exec("cat", "/data/note").stdout.read()
        net = reader.exec("python3", "-c", "import urllib.request as u; u.urlopen('http://1.1.1.1', timeout=3)")
        net_rc, net_err = net.wait(), net.stderr.read()
        reader.terminate()
        print(json.dumps({"where": where, "note": note, "net_rc": net_rc, "net_err": net_err[-200:]}))
        """,
    )
    assert seen["where"] == "/tmp\n" and seen["note"] == "kept\n"
    assert seen["net_rc"] != 0 and "unreachable" in seen["net_err"].lower()


def test_many_concurrent_execs_in_one_sandbox(berth_oci: BerthServer) -> None:
    seen = run(
        berth_oci,
        "sb-concurrent",
        """
        import asyncio
        async def main():
            sb = await modal.Sandbox.create.aio(app=app, image=image)
            async def one(i):
                p = await sb.exec.aio("sh", "-c", f"sleep 1; echo {i}")
                return (await p.stdout.read.aio()).strip(), await p.wait.aio()
            t0 = time.monotonic()
            results = await asyncio.gather(*(one(i) for i in range(8)))
            took = time.monotonic() - t0
            await sb.terminate.aio()
            return results, took
        results, took = asyncio.run(main())
        print(json.dumps({"results": results, "took": took}))
        """,
    )
    assert seen["results"] == [[str(i), 0] for i in range(8)]
    assert seen["took"] < 8  # they ran side by side, not one after another


def test_exec_past_its_timeout_is_killed_and_reported(berth_oci: BerthServer) -> None:
    seen = run(
        berth_oci,
        "sb-exec-timeout",
        """
        sb = modal.Sandbox.create(app=app, image=image)
        t0 = time.monotonic()
        p = sb.exec("sleep", "300", timeout=2)
        rc = p.wait()
        took = time.monotonic() - t0
        time.sleep(1)
        count = sb.exec("sh", "-c", "for p in /proc/[0-9]*; do tr '\\\\0' ' ' < $p/cmdline; echo; done"
                        " | grep -c '^sleep 300' || true")
        left = count.stdout.read().strip()
        sb.terminate()
        print(json.dumps({"rc": rc, "took": took, "left": left}))
        """,
    )
    assert seen["rc"] in (-1, 124)  # the client's deadline (-1) or the worker's kill (124), whichever lands first
    assert seen["took"] < 10
    assert seen["left"] == "0"  # the worker killed it inside the sandbox


def test_filesystem_api(berth_oci: BerthServer, tmp_path: object) -> None:
    seen = run(
        berth_oci,
        "sb-fs",
        f"""
        import os
        sb = modal.Sandbox.create(app=app, image=image)
        fs = sb.filesystem
        fs.write_text("hello\\n", "/tmp/a/b.txt")
        data = bytes(range(256)) * 4000
        fs.write_bytes(data, "/tmp/bin")
        same = fs.read_bytes("/tmp/bin") == data
        listed = sorted([f.name, f.type.value, f.size] for f in fs.list_files("/tmp"))
        st = fs.stat("/tmp/bin")
        fs.make_directory("/tmp/x/y")
        made = fs.stat("/tmp/x/y").type.value
        fs.remove("/tmp/x", recursive=True)
        errors = []
        for op in (lambda: fs.read_text("/nope"), lambda: fs.stat("/tmp/x"), lambda: fs.remove("/tmp/a"),
                   lambda: fs.read_bytes("/tmp")):
            try:
                op()
            except Exception as exc:
                errors.append(type(exc).__name__)
        local = os.path.join({str(tmp_path)!r}, "local.bin")
        open(local, "wb").write(data)
        fs.copy_from_local(local, "/root/c.bin")
        fs.copy_to_local("/root/c.bin", local + ".back")
        round_trip = open(local + ".back", "rb").read() == data
        print(json.dumps({{"text": fs.read_text("/tmp/a/b.txt"), "same": same, "listed": listed,
                          "size": st.size, "mode": st.mode, "made": made, "errors": errors, "round_trip": round_trip}}))
        sb.terminate()
        """,
    )
    assert seen["text"] == "hello\n" and seen["same"] is True and seen["round_trip"] is True
    assert seen["listed"] == [["a", "directory", 4096], ["bin", "file", 1024000]]
    assert seen["size"] == 1024000 and seen["mode"] == 0o644 and seen["made"] == "directory"
    assert seen["errors"] == [
        "SandboxFilesystemNotFoundError",
        "SandboxFilesystemNotFoundError",
        "SandboxFilesystemDirectoryNotEmptyError",
        "SandboxFilesystemIsADirectoryError",
    ]


def test_lookups_names_tags_list_and_detach(berth_oci: BerthServer) -> None:
    seen = run(
        berth_oci,
        "sb-lookups",
        """
        sb = modal.Sandbox.create(app=app, image=image, name="named-one", tags={"team": "a"})
        other = modal.Sandbox.create(app=app, image=image)
        other.set_tags({"team": "b", "x": "1"})
        try:
            modal.Sandbox.create(app=app, image=image, name="named-one")
            duplicate = None
        except AlreadyExistsError as exc:
            duplicate = str(exc)
        by_name = modal.Sandbox.from_name("sb-lookups", "named-one")
        p = by_name.exec("echo", "via-name")
        via_name = p.stdout.read()
        by_id = modal.Sandbox.from_id(other.object_id)
        listed = sorted(s.object_id for s in modal.Sandbox.list(app_id=app.app_id))
        team_a = [s.object_id for s in modal.Sandbox.list(app_id=app.app_id, tags={"team": "a"})]
        tags = by_id.get_tags()
        sb.detach()
        again = modal.Sandbox.from_id(sb.object_id)
        again_out = again.exec("echo", "again").stdout.read()
        again.terminate(); other.terminate()
        again.wait(raise_on_termination=False)
        after = [s.object_id for s in modal.Sandbox.list(app_id=app.app_id)]
        renamed = modal.Sandbox.create(app=app, image=image, name="named-one")  # the name is free again
        renamed.terminate()
        print(json.dumps({"duplicate": duplicate, "by_name": by_name.object_id, "sb": sb.object_id,
                          "other": other.object_id, "via_name": via_name, "listed": listed, "team_a": team_a,
                          "tags": tags, "again_out": again_out, "after": after}))
        """,
    )
    assert seen["duplicate"] and "named-one" in seen["duplicate"]
    assert seen["by_name"] == seen["sb"] and seen["via_name"] == "via-name\n"
    assert seen["listed"] == sorted([seen["sb"], seen["other"]])
    assert seen["team_a"] == [seen["sb"]]
    assert seen["tags"] == {"team": "b", "x": "1"}
    assert seen["again_out"] == "again\n"
    assert seen["after"] == []


def test_bad_input_gets_modals_errors(berth_oci: BerthServer) -> None:
    seen = run(
        berth_oci,
        "sb-bad",
        """
        out = {}
        try:
            modal.Sandbox.from_id("sb-doesnotexistdoesnotexistab")
        except NotFoundError as exc:
            out["unknown"] = type(exc).__name__
        try:
            modal.Sandbox.create(app=app, image=image, outbound_domain_allowlist=["*.example.com"])
        except InvalidError as exc:
            out["allowlist"] = str(exc)
        with_pty = modal.Sandbox.create("sleep", "60", app=app, image=image, pty=True)  # accepted (test_shell.py)
        with_pty.terminate()
        sb = modal.Sandbox.create(app=app, image=image)
        p = sb.exec("no-such-command", "x")
        out["missing"] = [p.wait(), p.stderr.read()]
        sb.terminate()
        sb.wait(raise_on_termination=False)
        try:
            sb.exec("echo", "late").wait()
        except Exception as exc:
            out["late"] = [type(exc).__name__, str(exc)]
        print(json.dumps(out))
        """,
    )
    assert seen["unknown"] == "NotFoundError"
    assert "outbound_domain_allowlist" in seen["allowlist"]  # wildcards are refused by name
    assert seen["missing"][0] == 127 and "no-such-command" in seen["missing"][1]
    assert seen["late"][0] == "ConflictError" and "finished" in seen["late"][1]


def test_sandbox_waits_for_the_slot_another_sandbox_holds(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A sandbox counts against worker capacity: with one slot, a second create waits (as Modal queues it)
    until the first sandbox's container is gone, then starts."""
    server = start_server(tmp_path_factory.mktemp("berth-one-slot") / "data", extra_env={"BERTH_WORKER_SLOTS": "1"})
    try:
        seen = run(
            server,
            "sb-capacity",
            """
            first = modal.Sandbox.create("sleep", "2", app=app)
            second = modal.Sandbox.create(app=app)  # no room until the first exits
            first_rc = first.poll()
            running = second.poll()
            second.terminate()
            print(json.dumps({"first_rc": first_rc, "running": running}))
            """,
        )
    finally:
        stop_server(server)
    assert seen == {"first_rc": 0, "running": None}


def test_process_runtime_runs_sandboxes_with_exec_and_files(berth: BerthServer) -> None:
    seen = run(
        berth,
        "sb-process",
        """
        sb = modal.Sandbox.create("sh", "-c", "echo started; sleep 600", app=app)
        first = next(iter(sb.stdout))
        p = sb.exec("sh", "-c", "echo $FOO; pwd", env={"FOO": "bar"})
        out = p.stdout.read()
        sb.filesystem.write_bytes(b"\\x00\\x01", "/root/berth-sandbox-test.bin")
        back = list(sb.filesystem.read_bytes("/root/berth-sandbox-test.bin"))
        sb.terminate()
        sb.wait(raise_on_termination=False)
        print(json.dumps({"first": first, "out": out, "back": back, "rc": sb.returncode}))
        """,
    )
    assert seen["first"] == "started\n"
    assert seen["out"].startswith("bar\n") and seen["out"].rstrip().endswith("/root")
    assert seen["back"] == [0, 1] and seen["rc"] == 137
    assert not Path("/root/berth-sandbox-test.bin").exists()  # it went to the task's own /root, not the host's


ROUTER_AUTH = """
import asyncio, json, os, sqlite3, time
import jwt, modal
from modal_proto.api_grpc import ModalClientStub
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives import serialization
from grpclib.client import Channel
from grpclib.exceptions import GRPCError
from modal_proto import api_pb2, task_command_router_pb2 as sr
from modal_proto.task_command_router_grpc import TaskCommandRouterStub

app = modal.App.lookup("sb-router-auth", create_if_missing=True)
a = modal.Sandbox.create(app=app, image=modal.Image.debian_slim())
b = modal.Sandbox.create(app=app, image=modal.Image.debian_slim())

async def main():
    # Raw gRPC, as any client could: the server with the user's token, the router with a grant.
    server_host, server_port = os.environ["MODAL_SERVER_URL"].removeprefix("http://").split(":")
    api_channel = Channel(server_host, int(server_port))
    api = ModalClientStub(api_channel)
    token = {"x-modal-token-id": os.environ["MODAL_TOKEN_ID"], "x-modal-token-secret": os.environ["MODAL_TOKEN_SECRET"]}
    def access(sb):
        req = api_pb2.SandboxGetCommandRouterAccessRequest(sandbox_id=sb)
        return api.SandboxGetCommandRouterAccess(req, metadata=token)
    def task_of(sb):
        return api.SandboxGetTaskIdV2(api_pb2.SandboxGetTaskIdRequest(sandbox_id=sb), metadata=token)
    grant_a = await access(a.object_id)
    task_a, task_b = (await task_of(a.object_id)).task_id, (await task_of(b.object_id)).task_id
    host, port = grant_a.url.removeprefix("http://").split(":")
    channel = Channel(host, int(port))
    stub = TaskCommandRouterStub(channel)
    claims = jwt.decode(grant_a.jwt, options={"verify_signature": False})
    with sqlite3.connect({db!r}) as db:
        pem = db.execute("SELECT body FROM objects WHERE kind = 'signing_key'").fetchone()[0]
    key = serialization.load_pem_private_key(pem, password=None)
    expired = jwt.encode({**claims, "exp": int(time.time()) - 5}, key, algorithm="EdDSA")
    forged = jwt.encode({**claims, "task_id": task_b}, Ed25519PrivateKey.generate(), algorithm="EdDSA")
    async def try_exec(task_id, token):
        req = sr.TaskExecStartRequest(task_id=task_id, exec_id="e-" + str(time.time()), command_args=["true"])
        metadata = {"authorization": f"Bearer {token}"} if token else {}
        try:
            await stub.TaskExecStart(req, metadata=metadata)
            return "OK"
        except GRPCError as exc:
            return exc.status.name
    out = {
        "own": await try_exec(task_a, grant_a.jwt),
        "other": await try_exec(task_b, grant_a.jwt),
        "expired": await try_exec(task_a, expired),
        "forged": await try_exec(task_b, forged),
        "missing": await try_exec(task_a, None),
        "claims": sorted(claims),
        "ttl": claims["exp"] - claims["iat"],
    }
    channel.close()
    api_channel.close()
    return out

out = asyncio.run(main())
a.terminate(); b.terminate()
print(json.dumps(out))
"""


def test_router_refuses_grants_for_another_task_expired_forged_or_missing(berth_oci: BerthServer) -> None:
    code = ROUTER_AUTH.replace("{db!r}", repr(str(berth_oci.data_dir / "berth.db")))
    seen = last_json(sdk(berth_oci, code))
    assert seen["own"] == "OK"
    assert seen["other"] == seen["expired"] == seen["forged"] == seen["missing"] == "UNAUTHENTICATED"
    assert {"task_id", "sandbox_id", "exp", "aud"} <= set(seen["claims"])
    assert 0 < seen["ttl"] <= 3600


def test_sandbox_on_a_remote_worker_is_reached_through_that_workers_router(tmp_path: Path) -> None:
    from tests.e2e.test_cluster import start_control_plane

    cluster = start_control_plane(tmp_path)
    try:
        cluster.add_worker("w1")
        cluster.wait_joined("w1")
        seen = run(
            cluster.server,
            "sb-remote",
            """
            sb = modal.Sandbox.create("sh", "-c", "echo from-remote; sleep 600", app=app)
            first = next(iter(sb.stdout))
            out = sb.exec("echo", "exec-remote").stdout.read()
            sb.terminate()
            sb.wait(raise_on_termination=False)
            print(json.dumps({"first": first, "out": out, "rc": sb.returncode}))
            """,
        )
        worker_log = (tmp_path / "w1.log").read_text()
    finally:
        cluster.stop()
    assert seen == {"first": "from-remote\n", "out": "exec-remote\n", "rc": 137}
    assert "command router serving on http://127.0.0.1:" in worker_log  # the worker's own router served it


def test_modal_container_exec_runs_in_a_function_container(berth: BerthServer, tmp_path: Path) -> None:
    note = tmp_path / "pid"
    client = subprocess.Popen(
        [sys.executable, "long_call.py", str(note)], cwd=APPS, env=berth.env, stdout=subprocess.DEVNULL
    )
    try:
        wait_for(note.exists, "the function to start", timeout=120)
        listed = modal(berth, "container", "list", "--json")
        assert listed.returncode == 0, listed.output
        rows = [list(map(str, row.values())) for row in json.loads(listed.stdout)]
        task_id = next(v for row in rows if any("long-call" in x for x in row) for v in row if v.startswith("ta-"))
        ran = modal(berth, "container", "exec", task_id, "--", "sh", "-c", "echo in-container $MODAL_TASK_ID")
    finally:
        client.send_signal(signal.SIGINT)
        client.wait(timeout=60)
    assert ran.returncode == 0, ran.output
    assert ran.stdout == f"in-container {task_id}\n"
