"""The runtime interface: start a task's container in a prepared directory, signal it, wait for it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from berth.domain.spec import TaskSpec
from berth.worker.execs import RunningCommand, StdinWriter
from berth.worker.pty import Pty


class Container(Protocol):
    stdout: asyncio.StreamReader
    stderr: asyncio.StreamReader

    @property
    def stdin(self) -> StdinWriter | None:
        """A sandbox's entrypoint reads it; None for function containers."""

    async def wait(self) -> int: ...

    def signal(self, signum: int) -> None: ...

    def exited(self) -> None:
        """Called once the main process has exited: end whatever it left running."""


class Runtime(Protocol):
    name: str
    isolated: bool

    async def start(self, spec: TaskSpec, workdir: Path, env: dict[str, str]) -> Container: ...

    async def cleanup(self, spec: TaskSpec, workdir: Path) -> None: ...

    async def exec(
        self,
        spec: TaskSpec,
        workdir: Path,
        argv: list[str],
        env: dict[str, str],
        cwd: str | None,
        tty: Pty | None = None,
    ) -> tuple[RunningCommand, Callable[[int], None]]:
        """Start a command inside the task's running container (TaskExecStart): the process whose pipes are
        the command's stdio, and how to signal the command itself. FileNotFoundError when it does not exist.
        With `tty` its terminal is the command's stdio and controlling terminal instead of pipes."""
        ...

    def exec_exit_code(self, code: int, stderr_head: bytes) -> int:
        """The exit code the client sees for an exec that exited with `code` (a runtime's own failure to find
        the command becomes 127, as in a shell)."""
        ...

    async def close(self) -> None:
        """The worker is stopping (after its tasks): release what the runtime holds of its own (a pool)."""
        ...

    def changes(self, task_id: str) -> tuple[Path, int] | None:
        """Where a running container's own filesystem changes are (its overlay's upper layer), and the host id
        its root's files are owned as (0, or the user namespace's base); None where the runtime keeps none."""
        ...

    def address(self, task_id: str) -> str | None:
        """The address the running container's ports are reached at from the worker's host (tunnels); None
        when it has no network of its own to reach (block_network) or does not run."""

    def usage(self, task_id: str) -> tuple[float, int] | None:
        """What the running container has used so far: CPU core-seconds since it started and the bytes of
        memory it holds now (metering); None when it cannot be read."""
        ...

    async def netns_path(self, task_id: str) -> str | None:
        """The running container's network namespace (a file setns(2) can enter); None when it shares the
        host's network."""
        ...
