"""The hardening every OCI container's config.json carries, and the seccomp profile's shape."""

from __future__ import annotations

from berth.worker import seccomp, userns
from berth.worker.oci_config import ContainerConfig, build_config
from berth.worker.runtime.oci import PIDS_LIMIT, gvisor_nproc_limit, sandbox_pids_limit


def test_every_container_gets_seccomp_few_capabilities_and_no_new_privileges() -> None:
    config = build_config(ContainerConfig(args=["true"], env={}, rootfs="/r"))
    process, linux = config["process"], config["linux"]
    assert process["noNewPrivileges"] is True
    caps = process["capabilities"]
    assert "inheritable" not in caps and "ambient" not in caps
    for kind in ("bounding", "effective", "permitted"):
        assert "CAP_SYS_ADMIN" not in caps[kind] and "CAP_NET_RAW" not in caps[kind]
        assert {"CAP_SETUID", "CAP_SETGID", "CAP_CHOWN"} <= set(caps[kind])  # apt and dpkg in builds
    assert linux["seccomp"]["defaultAction"] == "SCMP_ACT_ALLOW"
    assert {"/proc/kcore", "/sys/firmware"} <= set(linux["maskedPaths"])
    assert {"/proc/sys", "/proc/sysrq-trigger"} <= set(linux["readonlyPaths"])


def test_profile_denies_host_affecting_calls_and_namespace_clones() -> None:
    profile = seccomp.profile("x86_64")
    assert profile["architectures"][0] == "SCMP_ARCH_X86_64"
    denied = {n for rule in profile["syscalls"] if "args" not in rule for n in rule["names"] if rule["errnoRet"] == 1}
    assert {"mount", "unshare", "setns", "keyctl", "bpf", "init_module", "open_by_handle_at", "reboot"} <= denied
    assert "ptrace" not in denied  # confined by the pid namespace (see the module docstring)
    clone_masks = {r["args"][0]["value"] for r in profile["syscalls"] if r["names"] == ["clone"]}
    assert 0x10000000 in clone_masks and 0x20000000 in clone_masks  # CLONE_NEWUSER, CLONE_NEWPID
    assert {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": seccomp.ENOSYS} in profile["syscalls"]
    assert not [r for r in seccomp.profile("x86_64", gvisor=True)["syscalls"] if r["names"] == ["clone3"]]


def test_runsc_containers_share_the_network_namespace_they_are_started_in() -> None:
    config = build_config(ContainerConfig(args=["true"], env={}, rootfs="/r", inherit_network=True))
    assert "network" not in {n["type"] for n in config["linux"]["namespaces"]}
    assert (
        build_config(ContainerConfig(args=["true"], env={}, rootfs="/r", seccomp=None))["linux"].get("seccomp") is None
    )


def test_a_sandbox_config_maps_root_to_an_unprivileged_host_range() -> None:
    plain = build_config(ContainerConfig(args=["true"], env={}, rootfs="/r"))["linux"]
    assert "uidMappings" not in plain and {"type": "user"} not in plain["namespaces"]
    linux = build_config(ContainerConfig(args=["true"], env={}, rootfs="/r", id_mappings=userns.oci_mappings()))[
        "linux"
    ]
    assert {"type": "user"} in linux["namespaces"]
    assert linux["uidMappings"] == linux["gidMappings"] == [{"containerID": 0, "hostID": 100000, "size": 65536}]


def test_a_sandboxs_pids_limit_follows_its_memory() -> None:
    assert sandbox_pids_limit(0) == PIDS_LIMIT  # no memory limit: the containers' default
    assert sandbox_pids_limit(64) == 512  # at least enough to run
    assert sandbox_pids_limit(1024) == 4096
    assert sandbox_pids_limit(1 << 20) == PIDS_LIMIT


def test_a_gvisor_sandboxs_process_limit_fits_inside_its_host_limits() -> None:
    """runsc: RLIMIT_NPROC in the spec, low enough that gVisor's own host memory and threads per process
    (about 3.6 MiB and 5 threads each) stay inside the sandbox's memory and pids cgroups."""
    rlimits = build_config(ContainerConfig(args=["true"], env={}, rootfs="/r", nproc=42))["process"]["rlimits"]
    assert {"type": "RLIMIT_NPROC", "hard": 42, "soft": 42} in rlimits
    plain = build_config(ContainerConfig(args=["true"], env={}, rootfs="/r"))["process"]["rlimits"]
    assert [r["type"] for r in plain] == ["RLIMIT_NOFILE"]  # crun keeps the pids cgroup alone
    for memory_mb in (0, 64, 256, 1024, 8192):
        processes = gvisor_nproc_limit(memory_mb)
        assert processes >= 16
        assert 64 + 6 * processes <= sandbox_pids_limit(memory_mb)  # gVisor's base threads, then ~5 each
        if memory_mb >= 256:
            assert 25 + 4 * processes <= memory_mb  # gVisor's base MiB, then ~3.6 each
