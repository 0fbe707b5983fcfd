"""What /proc says about a process: when it started and how much CPU it has used (Linux only)."""

from __future__ import annotations

import os
import time
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    """/proc/<pid>/stat fields from field 3 (state) on; the command name before them may hold spaces."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def process_start_epoch(pid: int) -> float | None:
    """Wall-clock time at which process `pid` started (10 ms resolution), or None if it is gone.

    /proc/<pid>/stat field 22 counts clock ticks since boot; /proc/uptime says how long ago boot was.
    """
    try:
        started_ticks = int(_stat_fields(pid)[19])
        uptime_s = float(Path("/proc/uptime").read_text().split()[0])
    except OSError:
        return None
    return time.time() - uptime_s + started_ticks / CLOCK_TICKS


def process_cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time process `pid` has used so far, or None if it is gone."""
    try:
        fields = _stat_fields(pid)
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
