"""Escape attempts, run by python3 INSIDE a sandbox (tests/e2e/test_escape.py sends this file's text).

Each attempt records that it ran and what came of it: {"ok": True, "value": ...} when the call
succeeded, else {"ok": False, "errno": ..., "error": ...}. The test decides what counts as an escape.
Only the standard library and, for gRPC, the modal client the worker bind-mounts at /pkg."""

import ctypes
import glob
import hashlib
import json
import os
import socket
import stat
import sys

ARGS = json.loads(sys.argv[1])
LIBC = ctypes.CDLL(None, use_errno=True)
OUT: dict = {}


def attempt(name):
    def run(fn):
        try:
            OUT[name] = {"ok": True, "value": fn()}
        except OSError as exc:
            OUT[name] = {"ok": False, "errno": exc.errno, "error": str(exc)}
        except Exception as exc:  # noqa: BLE001 - every outcome is data here
            OUT[name] = {"ok": False, "errno": None, "error": repr(exc)}
        return fn

    return run


def checked(ret):
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


def read(path, n=4096):
    with open(path, "rb") as f:
        return f.read(n)


# --- who am I -----------------------------------------------------------------------------------
@attempt("identity")
def _():
    status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
    return {
        "uid": os.getuid(),
        "uid_map": open("/proc/self/uid_map").read().split(),
        "cap_eff": status["CapEff"].strip(),
    }


# --- host files and processes -------------------------------------------------------------------
@attempt("host_paths")
def _():
    return {p: os.path.exists(p) for p in ARGS["host_paths"]}


@attempt("shadow")
def _():
    return hashlib.sha256(read("/etc/shadow", 1 << 20)).hexdigest()


@attempt("proc")
def _():
    pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
    cmdlines = []
    for pid in pids:
        try:
            cmdlines.append(read(f"/proc/{pid}/cmdline").replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            pass
    return {"pids": pids, "cmdlines": cmdlines}


@attempt("server_environ")
def _():
    return read(f"/proc/{ARGS['server_pid']}/environ").decode(errors="replace")


@attempt("secrets_visible")
def _():
    """The user's token secret anywhere in this sandbox's processes' environments."""
    blobs = [read(p, 1 << 20) for p in glob.glob("/proc/[0-9]*/environ")]
    return any(ARGS["token_secret"].encode() in b for b in blobs)


@attempt("victim_files")
def _():
    return glob.glob("/proc/*/root/tmp/victim-*") + [p for p in ARGS["victim_host_paths"] if os.path.exists(p)]


# --- the Berth API and another sandbox's router ---------------------------------------------------
def grpc_status(call):
    import asyncio

    sys.path[:0] = ["/pkg", "/__modal/deps"]
    from grpclib.exceptions import GRPCError

    async def go():
        try:
            await asyncio.wait_for(call(), 10)
            return "OK"
        except GRPCError as exc:
            return exc.status.name

    return asyncio.run(go())


def api_call(rpc, request, metadata):
    from urllib.parse import urlsplit

    async def call():
        from grpclib.client import Channel
        from modal_proto.api_grpc import ModalClientStub

        url = urlsplit(ARGS["server_url"])
        channel = Channel(url.hostname, url.port)
        try:
            await getattr(ModalClientStub(channel), rpc)(request(), metadata=metadata)
        finally:
            channel.close()

    return grpc_status(call)


def _terminate_victim():
    from modal_proto import api_pb2

    return api_pb2.SandboxTerminateRequest(sandbox_id=ARGS["victim_id"])


def _router_access_victim():
    from modal_proto import api_pb2

    return api_pb2.SandboxGetCommandRouterAccessRequest(sandbox_id=ARGS["victim_id"])


FORGED_TASK = {"x-berth-task-id": ARGS["victim_task"], "x-berth-task-secret": "forged-" + "0" * 32}


@attempt("api_terminate_no_credentials")
def _():
    return api_call("SandboxTerminateV2", _terminate_victim, {})


@attempt("api_terminate_forged_task")
def _():
    return api_call("SandboxTerminateV2", _terminate_victim, FORGED_TASK)


@attempt("api_router_grant_forged_task")
def _():
    return api_call("SandboxGetCommandRouterAccess", _router_access_victim, FORGED_TASK)


def router_exec(token):
    from urllib.parse import urlsplit

    async def call():
        from grpclib.client import Channel
        from modal_proto import task_command_router_pb2 as sr
        from modal_proto.task_command_router_grpc import TaskCommandRouterStub

        url = urlsplit(ARGS["router_url"])
        channel = Channel(url.hostname, url.port)
        req = sr.TaskExecStartRequest(task_id=ARGS["victim_task"], exec_id="e-escape", command_args=["true"])
        try:
            metadata = {"authorization": f"Bearer {token}"} if token else {}
            await TaskCommandRouterStub(channel).TaskExecStart(req, metadata=metadata)
        finally:
            channel.close()

    return grpc_status(call)


@attempt("router_exec_no_grant")
def _():
    return router_exec(None)


@attempt("router_exec_forged_grant")
def _():
    import base64

    def b64(d):
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()

    claims = {"task_id": ARGS["victim_task"], "sandbox_id": ARGS["victim_id"], "exp": 4102444800}
    return router_exec(b64({"alg": "EdDSA", "typ": "JWT"}) + "." + b64(claims) + "." + "A" * 86)


@attempt("router_exec_unsigned_grant")
def _():
    import base64

    def b64(d):
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()

    claims = {"task_id": ARGS["victim_task"], "sandbox_id": ARGS["victim_id"], "exp": 4102444800}
    return router_exec(b64({"alg": "none", "typ": "JWT"}) + "." + b64(claims) + ".")


@attempt("victim_port")
def _():
    socket.create_connection((ARGS["victim_ip"], 8000), timeout=3).close()
    return "connected"


# --- kernel interfaces --------------------------------------------------------------------------
@attempt("mount_tmpfs")
def _():
    return checked(LIBC.mount(b"none", b"/mnt", b"tmpfs", 0, None))


@attempt("mount_proc")
def _():
    os.makedirs("/tmp/p", exist_ok=True)
    return checked(LIBC.mount(b"proc", b"/tmp/p", b"proc", 0, None))


@attempt("ptrace_server")
def _():
    return checked(LIBC.ptrace(16, ARGS["server_pid"], None, None))  # PTRACE_ATTACH


@attempt("init_module")
def _():
    return checked(LIBC.syscall(175, None, 0, b""))


@attempt("finit_module")
def _():
    fd = os.open("/dev/null", os.O_RDONLY)
    return checked(LIBC.syscall(313, fd, b"", 0))


@attempt("raw_socket")
def _():
    socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).close()
    return "opened"


@attempt("packet_socket")
def _():
    socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close()
    return "opened"


for _flag, _name in [(0x10000000, "user"), (0x00020000, "mount"), (0x40000000, "net"), (0x20000000, "pid")]:
    attempt(f"unshare_{_name}")(lambda flag=_flag: checked(LIBC.unshare(flag)))


@attempt("setns")
def _():
    return checked(LIBC.setns(os.open("/proc/self/ns/net", os.O_RDONLY), 0))


def write(path, data=b"1"):
    with open(path, "wb") as f:
        f.write(data)
    return "written"


for _path in ["/proc/sys/kernel/hostname", "/proc/sys/vm/drop_caches", "/proc/sysrq-trigger"]:
    attempt(f"write {_path}")(lambda p=_path: write(p, b"h"))


@attempt("cgroup_writes")
def _():
    names = ("pids.max", "memory.limit_in_bytes", "memory.max", "cgroup.procs", "release_agent", "notify_on_release")
    found = [p for p in glob.glob("/sys/fs/cgroup/**", recursive=True) if os.path.basename(p) in names]
    results = {}
    for path in found[:40]:
        try:
            results[path] = write(path, b"1")
        except OSError as exc:
            results[path] = exc.errno
    return results


def mknod_and_read(path, kind, major, minor):
    try:
        os.mknod(path, kind | 0o600, os.makedev(major, minor))
    except OSError as exc:
        return {"mknod": exc.errno}
    try:
        return {"mknod": 0, "read": len(read(path, 512))}
    except OSError as exc:
        return {"mknod": 0, "read": exc.errno}


@attempt("mknod_host_disk")
def _():
    return mknod_and_read("/tmp/hostdisk", stat.S_IFBLK, *ARGS["root_dev"])


@attempt("mknod_mem")
def _():
    return mknod_and_read("/tmp/mem", stat.S_IFCHR, 1, 1)


@attempt("kmsg")
def _():
    return len(read("/dev/kmsg"))


print(json.dumps(OUT))
