"""The runtime interface: start a task's container in a prepared directory, signal it, wait for it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Protocol

from berth.domain.spec import TaskSpec


class Container(Protocol):
    stdout: asyncio.StreamReader
    stderr: asyncio.StreamReader

    async def wait(self) -> int: ...

    def signal(self, signum: int) -> None: ...

    def exited(self) -> None:
        """Called once the main process has exited: end whatever it left running."""


class Runtime(Protocol):
    name: str
    isolated: bool

    async def start(self, spec: TaskSpec, workdir: Path, env: dict[str, str]) -> Container: ...

    async def cleanup(self, spec: TaskSpec, workdir: Path) -> None: ...
