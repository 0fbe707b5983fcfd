"""The OCI runtime-spec config.json for one container, generated from plain values (no I/O).

Every container (function containers, image build steps, sandboxes) gets the same hardening, like
Docker's defaults: the seccomp profile of berth.worker.seccomp, Docker's capability set without
CAP_NET_RAW (none of CAP_SYS_ADMIN, CAP_SYS_MODULE, CAP_SYS_PTRACE, CAP_NET_ADMIN, ...), no inheritable
capabilities, no_new_privileges, and the masked and read-only /proc and /sys paths of Docker's spec.
That set is still enough for image builds: apt drops to _apt with SETUID/SETGID, dpkg sets owners
and modes (CHOWN, FOWNER, FSETID), pip and uv need nothing more."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from berth.worker import seccomp

# Docker's default capability set minus CAP_NET_RAW (no raw packets, ARP or ICMP spoofing on the bridge).
CAPABILITIES = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
]
CPU_PERIOD_US = 100_000
MASKED_PATHS = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
    "/sys/devices/virtual/powercap",
]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


@dataclass(frozen=True)
class Bind:
    source: str  # host path
    destination: str  # container path
    readonly: bool = True


@dataclass
class ContainerConfig:
    args: list[str]
    env: dict[str, str]
    rootfs: str
    cwd: str = "/root"
    hostname: str = "berth"
    netns_path: str | None = None  # None: a fresh namespace with only lo
    # No network namespace in the spec: the container shares the runtime's own. For runsc, which is
    # started inside the container's namespace (gVisor's --network=host; its sandbox network fails here).
    inherit_network: bool = False
    cgroups_path: str = ""
    cpu: float = 0.0  # cores; 0 = no quota
    pids_limit: int = 0
    nofile: int = 1024
    nproc: int = 0  # RLIMIT_NPROC of the container's processes (per user); 0: none
    binds: list[Bind] = field(default_factory=list)
    devices: list[dict[str, Any]] = field(default_factory=list)
    seccomp: dict[str, Any] | None = field(default_factory=seccomp.profile)  # None: no filter
    # A user namespace with these linux.uidMappings/gidMappings (berth.worker.userns); None: none, the
    # container's root is host root (function containers, image builds).
    id_mappings: dict[str, Any] | None = None


def _base_mounts() -> list[dict[str, Any]]:
    return [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755"]},
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=268435456"],
        },
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
        {
            "destination": "/sys/fs/cgroup",
            "type": "cgroup",
            "source": "cgroup",
            "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
        },
    ]


def _bind_mount(b: Bind) -> dict[str, Any]:
    options = ["rbind", "nosuid", "nodev"]
    options.append("ro" if b.readonly else "rw")
    return {"destination": b.destination, "type": "bind", "source": b.source, "options": options}


def _resources(c: ContainerConfig) -> dict[str, Any]:
    res: dict[str, Any] = {"devices": [{"allow": False, "access": "rwm"}]}
    for dev in c.devices:
        res["devices"].append(
            {"allow": True, "type": "c", "major": dev["major"], "minor": dev["minor"], "access": "rwm"}
        )
    if c.cpu > 0:
        res["cpu"] = {"quota": max(1000, int(c.cpu * CPU_PERIOD_US)), "period": CPU_PERIOD_US}
    if c.pids_limit > 0:
        res["pids"] = {"limit": c.pids_limit}
    return res


def build_config(c: ContainerConfig) -> dict[str, Any]:
    """The config.json for `crun run`/`runc run`. Memory limits are not here: the runtime sets them on a
    parent cgroup it owns, so the OOM-kill counter survives the container's own cgroup."""
    caps = list(CAPABILITIES)
    namespaces: list[dict[str, str]] = [{"type": t} for t in ("pid", "ipc", "uts", "mount")]
    if not c.inherit_network:
        namespaces.append({"type": "network", "path": c.netns_path} if c.netns_path else {"type": "network"})
    if c.id_mappings is not None:
        namespaces.append({"type": "user"})
    linux: dict[str, Any] = {
        "namespaces": namespaces,
        "cgroupsPath": c.cgroups_path,
        "resources": _resources(c),
        "devices": [
            {"path": d["path"], "type": "c", "major": d["major"], "minor": d["minor"], "fileMode": 0o666}
            for d in c.devices
        ],
        "maskedPaths": MASKED_PATHS,
        "readonlyPaths": READONLY_PATHS,
    }
    if c.seccomp is not None:
        linux["seccomp"] = c.seccomp
    if c.id_mappings is not None:
        linux.update(c.id_mappings)
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": c.args,
            "env": [f"{k}={v}" for k, v in c.env.items()],
            "cwd": c.cwd,
            # No inheritable (nor ambient) capabilities: an exec'd file capability cannot pick them up.
            "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
            "rlimits": [
                {"type": "RLIMIT_NOFILE", "hard": c.nofile, "soft": c.nofile},
                *([{"type": "RLIMIT_NPROC", "hard": c.nproc, "soft": c.nproc}] if c.nproc > 0 else []),
            ],
            # setuid binaries and file capabilities cannot raise privileges past what the container has.
            "noNewPrivileges": True,
        },
        "root": {"path": c.rootfs, "readonly": False},
        "hostname": c.hostname,
        "mounts": _base_mounts() + [_bind_mount(b) for b in c.binds],
        "linux": linux,
    }
