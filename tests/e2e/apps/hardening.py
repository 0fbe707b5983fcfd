"""Functions that try what untrusted code must not be able to do from inside a container."""

import ctypes
import errno
import os
import platform
import shutil
import subprocess

import modal

app = modal.App("e2e-hardening")

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
SIGCHLD = 17
# x86_64 syscall numbers of calls the seccomp profile denies (no libc wrappers for most of them).
X86_64 = {"clone": 56, "keyctl": 250, "bpf": 321, "perf_event_open": 298, "open_by_handle_at": 304, "finit_module": 313}


def _errno(result: int) -> int:
    return ctypes.get_errno() if result == -1 else 0


def _status() -> dict[str, str]:
    with open("/proc/self/status") as f:
        return {k: v.strip() for k, _, v in (line.partition(":") for line in f)}


@app.function()
def probe(host_paths: list[str]) -> dict[str, object]:
    libc = ctypes.CDLL(None, use_errno=True)
    out: dict[str, object] = {}
    status = _status()
    out["seccomp"] = status.get("Seccomp")
    out["no_new_privs"] = status.get("NoNewPrivs")
    out["cap_eff"] = int(status.get("CapEff", "0"), 16)
    out["unshare_mount_ns"] = _errno(libc.unshare(CLONE_NEWNS))
    out["unshare_user_ns"] = _errno(libc.unshare(CLONE_NEWUSER))
    os.makedirs("/tmp/m", exist_ok=True)
    out["mount"] = _errno(libc.mount(b"none", b"/tmp/m", b"tmpfs", 0, None))
    for name, argv in (
        ("unshare_cmd", ["unshare", "-U", "-r", "true"]),
        ("mount_cmd", ["mount", "-t", "tmpfs", "none", "/tmp/m"]),
    ):
        if shutil.which(argv[0]):  # util-linux's tools, where the image has them
            run = subprocess.run(argv, capture_output=True, text=True)
            out[name] = (run.returncode, run.stderr)
    module = b"\0" * 64
    out["init_module"] = _errno(libc.init_module(module, len(module), b""))
    out["delete_module"] = _errno(libc.delete_module(b"berth_no_such_module", os.O_NONBLOCK))
    if platform.machine() == "x86_64":
        syscall = libc.syscall
        pid = syscall(X86_64["clone"], CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0)
        if pid == 0:
            os._exit(0)
        out["clone_newuser"] = _errno(pid)
        if pid > 0:
            os.waitpid(pid, 0)
        out["keyctl"] = _errno(syscall(X86_64["keyctl"], 0, 0, 0, 0, 0))  # KEYCTL_GET_KEYRING_ID
        out["bpf"] = _errno(syscall(X86_64["bpf"], 0, 0, 0))
        out["perf_event_open"] = _errno(syscall(X86_64["perf_event_open"], 0, 0, -1, -1, 0))
        out["open_by_handle_at"] = _errno(syscall(X86_64["open_by_handle_at"], -100, 0, 0))
        with open("/dev/null", "rb") as null:
            out["finit_module"] = _errno(syscall(X86_64["finit_module"], null.fileno(), b"", 0))
    # Opened for writing, nothing written: should one ever open, nothing happens to the host.
    for name, path in (("sysrq", "/proc/sysrq-trigger"), ("core_pattern", "/proc/sys/kernel/core_pattern")):
        try:
            with open(path, "w"):
                out[name] = "opened"
        except OSError as exc:
            out[name] = errno.errorcode.get(exc.errno or 0, str(exc.errno))
    with open("/proc/1/cmdline", "rb") as f:
        out["init_cmdline"] = f.read().replace(b"\0", b" ").decode()
    out["pids"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
    for name, path in (("kcore", "/proc/kcore"), ("keys", "/proc/keys")):
        try:
            with open(path, "rb") as f:
                out[name] = len(f.read(16))
        except OSError as exc:  # not in every kernel (gVisor has neither)
            out[name] = errno.errorcode.get(exc.errno or 0, str(exc.errno))
    out["host_paths"] = {p: os.path.exists(p) for p in host_paths}
    return out


@app.function()
def kernel() -> dict[str, object]:
    """What the container's kernel says it is, and whether the image's files are there."""
    with open("/proc/version") as f:
        version = f.read()
    dmesg = subprocess.run(["dmesg"], capture_output=True, text=True)
    with open("/etc/os-release") as f:
        os_release = f.read()
    return {
        "version": version,
        "release": platform.release(),
        "dmesg": dmesg.stdout[:2000],
        "os_release": os_release,
        "python": platform.python_version(),
        "debian_version": os.path.exists("/etc/debian_version"),
        "pid": os.getpid(),
        "seccomp": _status().get("Seccomp"),
        "server_url": os.environ.get("MODAL_SERVER_URL", ""),
    }
