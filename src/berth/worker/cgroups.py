"""cgroup placement for containers: each container gets a parent cgroup the worker owns, and the runtime
puts the container in a child `c` of it (linux.cgroupsPath). The memory limit sits on that parent: when
the runtime removes the container's own cgroup at exit, the parent still tells whether the kernel
OOM-killed something.

- cgroup v1 (or the v1 side of a hybrid host): the parent is nested under the worker's own memory
  cgroup, so containers count against whatever limits the worker lives in.
- cgroup v2 (unified): a cgroup with processes cannot also hand controllers to children, so parents
  live under /berth at the root, with memory, cpu and pids delegated down to them."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
_OOM_SLACK = 2 * 1024 * 1024
_V2_CONTROLLERS = ("memory", "cpu", "pids")


def unified(root: Path = CGROUP_ROOT) -> bool:
    """Whether the host runs cgroup v2 alone (not the v1 hybrid layout)."""
    return (root / "cgroup.controllers").exists()


def own_memory_cgroup() -> str:
    """This process's memory cgroup path, e.g. /process_api/ab12 (v1), or '' at the root."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if "memory" in controllers.split(","):
                return path.rstrip("/")
    return ""


def _delegate(directory: Path) -> None:
    """Let `directory`'s children use the v2 controllers it has (best effort: some may be absent)."""
    try:
        available = set((directory / "cgroup.controllers").read_text().split())
    except OSError:
        return
    for name in _V2_CONTROLLERS:
        if name in available:
            with contextlib.suppress(OSError):
                (directory / "cgroup.subtree_control").write_text(f"+{name}")


def _stat(path: Path) -> dict[str, str]:
    """A flat-keyed cgroup file (cpu.stat, memory.stat): name → value."""
    return dict(line.split(" ", 1) for line in path.read_text().splitlines() if " " in line)


class ContainerCgroup:
    def __init__(self, container_id: str, base: str | None = None, root: Path = CGROUP_ROOT) -> None:
        self.root = root
        self.v2 = unified(root)
        if base is None:
            base = "" if self.v2 else own_memory_cgroup()
        self.parent = f"{base}/berth/{container_id}"

    @property
    def container_path(self) -> str:
        """linux.cgroupsPath for the runtime: a child of the parent, the same in every hierarchy."""
        return f"{self.parent}/c"

    @property
    def _memory_dir(self) -> Path:
        if self.v2:
            return self.root / self.parent.lstrip("/")
        return self.root / "memory" / self.parent.lstrip("/")

    def create(self, memory_mb: int) -> None:
        d = self._memory_dir
        if self.v2:
            for ancestor in self._v2_ancestors():
                ancestor.mkdir(exist_ok=True)
                _delegate(ancestor)
            d.mkdir(exist_ok=True)
            _delegate(d)
            if memory_mb > 0:
                limit = str(memory_mb * 1024 * 1024)
                (d / "memory.max").write_text(limit)
                with contextlib.suppress(OSError):  # no escaping the limit through swap
                    (d / "memory.swap.max").write_text("0")
            return
        d.mkdir(parents=True, exist_ok=True)
        if memory_mb > 0:
            limit = str(memory_mb * 1024 * 1024)
            (d / "memory.limit_in_bytes").write_text(limit)
            memsw = d / "memory.memsw.limit_in_bytes"
            if memsw.exists():  # no escaping the limit through swap
                with contextlib.suppress(OSError):
                    memsw.write_text(limit)

    def _v2_ancestors(self) -> list[Path]:
        """The root and every cgroup between it and the parent, top down."""
        parts = Path(self.parent.lstrip("/")).parts[:-1]
        return [self.root, *(self.root / Path(*parts[: i + 1]) for i in range(len(parts)))]

    def oom_killed(self) -> bool:
        """Whether the container ran into its memory limit. v2 counts OOM kills of descendants in the
        parent's memory.events; v1 counts the kill in the victim's cgroup, which the runtime has already
        removed, so there the parent's peak usage tells."""
        d = self._memory_dir
        with contextlib.suppress(OSError, ValueError):
            events = "memory.events" if self.v2 else "memory.oom_control"
            for line in (d / events).read_text().splitlines():
                name, _, value = line.partition(" ")
                if name == "oom_kill" and int(value) > 0:
                    return True
            if self.v2:
                return False
            limit = int((d / "memory.limit_in_bytes").read_text())
            peak = int((d / "memory.max_usage_in_bytes").read_text())
            return peak >= limit - _OOM_SLACK
        return False

    def usage(self) -> tuple[float, int] | None:
        """CPU seconds the container has used so far and the memory it holds now (bytes), read from the
        parent, which counts its child's usage and keeps it after the runtime removed the child; None when
        the cgroup cannot be read (not created yet, or removed)."""
        rel = self.parent.lstrip("/")
        try:
            if self.v2:
                d = self.root / rel
                cpu_s = int(_stat(d / "cpu.stat")["usage_usec"]) / 1e6
                usage, inactive = int((d / "memory.current").read_text()), _stat(d / "memory.stat")["inactive_file"]
            else:
                cpu_s = int((self.root / "cpuacct" / rel / "cpuacct.usage").read_text()) / 1e9
                d = self.root / "memory" / rel
                usage = int((d / "memory.usage_in_bytes").read_text())
                inactive = _stat(d / "memory.stat")["total_inactive_file"]
            # The working set, as the kubelet counts it: page cache the kernel could drop at once is not held.
            return cpu_s, max(0, usage - int(inactive))
        except (OSError, ValueError, KeyError):
            return None

    def remove(self) -> None:
        """rmdir the parent (and a leftover child) in every hierarchy the runtime may have touched."""
        with contextlib.suppress(OSError):
            hierarchies = (
                [self.root] if self.v2 else [p for p in self.root.iterdir() if p.is_dir() and not p.is_symlink()]
            )
            for h in hierarchies:
                d = h / self.parent.lstrip("/")
                for path in (d / "c", d):
                    with contextlib.suppress(OSError):
                        os.rmdir(path)
