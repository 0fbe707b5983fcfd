"""cgroup v1 placement for containers: each container gets a parent cgroup the worker owns, nested under
the worker's own memory cgroup (so containers count against whatever limits the worker lives in).
The memory limit sits on that parent: when the runtime removes the container's own cgroup at exit,
the parent still tells whether the kernel OOM-killed something."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
_OOM_SLACK = 2 * 1024 * 1024


def own_memory_cgroup() -> str:
    """This process's memory cgroup path, e.g. /process_api/ab12 (v1), or '' at the root."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if "memory" in controllers.split(","):
                return path.rstrip("/")
    return ""


class ContainerCgroup:
    def __init__(self, container_id: str, base: str | None = None) -> None:
        base = own_memory_cgroup() if base is None else base
        self.parent = f"{base}/berth/{container_id}"

    @property
    def container_path(self) -> str:
        """linux.cgroupsPath for the runtime: a child of the parent, the same in every hierarchy."""
        return f"{self.parent}/c"

    @property
    def _memory_dir(self) -> Path:
        return CGROUP_ROOT / "memory" / self.parent.lstrip("/")

    def create(self, memory_mb: int) -> None:
        d = self._memory_dir
        d.mkdir(parents=True, exist_ok=True)
        if memory_mb > 0:
            limit = str(memory_mb * 1024 * 1024)
            (d / "memory.limit_in_bytes").write_text(limit)
            memsw = d / "memory.memsw.limit_in_bytes"
            if memsw.exists():  # no escaping the limit through swap
                with contextlib.suppress(OSError):
                    memsw.write_text(limit)

    def oom_killed(self) -> bool:
        """Whether the container ran into its memory limit. cgroup v1 counts the kill itself in the
        victim's cgroup, which the runtime has already removed; the parent's peak usage survives."""
        d = self._memory_dir
        with contextlib.suppress(OSError, ValueError):
            for line in (d / "memory.oom_control").read_text().splitlines():
                name, _, value = line.partition(" ")
                if name == "oom_kill" and int(value) > 0:
                    return True
            limit = int((d / "memory.limit_in_bytes").read_text())
            peak = int((d / "memory.max_usage_in_bytes").read_text())
            return peak >= limit - _OOM_SLACK
        return False

    def remove(self) -> None:
        """rmdir the parent (and a leftover child) in every v1 hierarchy the runtime may have touched."""
        with contextlib.suppress(OSError):
            hierarchies = [p for p in CGROUP_ROOT.iterdir() if p.is_dir() and not p.is_symlink()]
            for h in hierarchies:
                d = h / self.parent.lstrip("/")
                for path in (d / "c", d):
                    with contextlib.suppress(OSError):
                        os.rmdir(path)
