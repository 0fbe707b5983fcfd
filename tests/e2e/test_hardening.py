"""Hardening of crun containers, tried from inside a function with the real client: the seccomp profile,
the capability set, no_new_privileges, masked and read-only /proc paths, and the container's own pid
namespace and root."""

from __future__ import annotations

import errno
import platform
from pathlib import Path

from tests.e2e.conftest import BerthServer, call_remote

CAP_NET_ADMIN = 12
CAP_NET_RAW = 13
CAP_SYS_MODULE = 16
CAP_SYS_PTRACE = 19
CAP_SYS_ADMIN = 21
CAP_SYS_TIME = 25


def call(berth: BerthServer, fn: str, *args: object, app: str = "hardening") -> dict[str, object]:
    result = call_remote(berth, app, fn, *args)
    assert isinstance(result, dict)
    return result


def test_untrusted_code_cannot_reach_past_its_container(berth_oci: BerthServer, tmp_path: Path) -> None:
    marker = tmp_path / "host-only-marker"
    marker.write_text("the host's")
    seen = call(berth_oci, "probe", [str(marker), str(tmp_path)])

    assert seen["seccomp"] == "2"  # a seccomp filter is installed
    assert seen["no_new_privs"] == "1"
    caps = int(str(seen["cap_eff"]))
    for cap in (CAP_SYS_ADMIN, CAP_SYS_MODULE, CAP_SYS_PTRACE, CAP_NET_ADMIN, CAP_NET_RAW, CAP_SYS_TIME):
        assert not caps & (1 << cap), f"capability {cap} is effective"

    # New namespaces and mounts are refused with EPERM, by libc call and by the tools.
    assert seen["unshare_mount_ns"] == errno.EPERM
    assert seen["unshare_user_ns"] == errno.EPERM
    assert seen["mount"] == errno.EPERM
    for tool in ("unshare_cmd", "mount_cmd"):  # (returncode, stderr) where the image has the tool
        if tool in seen:
            code, stderr = seen[tool]  # type: ignore[misc]
            assert code != 0 and ("not permitted" in stderr or "permission denied" in stderr), stderr
    # No kernel modules, keyrings, bpf, perf or file handles.
    assert seen["init_module"] == errno.EPERM
    assert seen["delete_module"] == errno.EPERM
    if platform.machine() == "x86_64":
        for call_name in ("clone_newuser", "keyctl", "bpf", "perf_event_open", "open_by_handle_at", "finit_module"):
            assert seen[call_name] == errno.EPERM, (call_name, seen[call_name])

    # /proc/sys and /proc/sysrq-trigger are read-only, /proc/kcore and /proc/keys masked (where the host
    # kernel has them at all: some are built without sysrq or kcore).
    refused = ("EROFS", "EACCES", "EPERM")
    assert seen["core_pattern"] in refused
    assert seen["sysrq"] in refused if Path("/proc/sysrq-trigger").exists() else seen["sysrq"] == "ENOENT"
    for masked in ("kcore", "keys"):
        assert seen[masked] == 0 if Path("/proc", masked).exists() else seen[masked] == "ENOENT"
    # pid 1 is the container's own init, and the container sees only its own processes. Its command is Berth's
    # container loop (worker/berth_loop.py), or berth-execd for a container from the standby pool, which started
    # the loop at hand-over.
    init = str(seen["init_cmdline"])
    assert "/__berth/loop.py" in init or "/__berth/execd --wait" in init, init
    pids = seen["pids"]
    assert isinstance(pids, list) and pids[0] == 1 and len(pids) < 20
    # The host's files are not there.
    assert seen["host_paths"] == {str(marker): False, str(tmp_path): False}
