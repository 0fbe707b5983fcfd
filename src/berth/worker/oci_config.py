"""The OCI runtime-spec config.json for one container, generated from plain values (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Docker's default capability set: enough for apt (drops to _apt), chown, setuid tools, ping.
CAPABILITIES = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
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
    cgroups_path: str = ""
    cpu: float = 0.0  # cores; 0 = no quota
    pids_limit: int = 0
    nofile: int = 1024
    binds: list[Bind] = field(default_factory=list)
    devices: list[dict[str, Any]] = field(default_factory=list)


def _base_mounts() -> list[dict[str, Any]]:
    return [
        {"destination": "/proc", "type": "proc", "source": "proc"},
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
    namespaces.append({"type": "network", "path": c.netns_path} if c.netns_path else {"type": "network"})
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": c.args,
            "env": [f"{k}={v}" for k, v in c.env.items()],
            "cwd": c.cwd,
            "capabilities": {k: caps for k in ("bounding", "effective", "inheritable", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": c.nofile, "soft": c.nofile}],
            "noNewPrivileges": False,
        },
        "root": {"path": c.rootfs, "readonly": False},
        "hostname": c.hostname,
        "mounts": _base_mounts() + [_bind_mount(b) for b in c.binds],
        "linux": {
            "namespaces": namespaces,
            "cgroupsPath": c.cgroups_path,
            "resources": _resources(c),
            "devices": [
                {"path": d["path"], "type": "c", "major": d["major"], "minor": d["minor"], "fileMode": 0o666}
                for d in c.devices
            ],
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS,
        },
    }
