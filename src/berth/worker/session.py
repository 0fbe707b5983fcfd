"""One running task as the command router sees it: its entrypoint's stdio (sandboxes), its execs, and when
anything last happened in it (the idle timeout of a sandbox counts from there)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from berth.clock import Clock
from berth.worker.execs import COMMAND_NOT_FOUND, ExecProcess, OrderedStdin, OutputBuffer, RunningCommand
from berth.worker.probes import Readiness
from berth.worker.pty import Pty, PtySettings

log = logging.getLogger("berth.worker.session")

# Starts a command in the task's container: (argv, env, cwd, pty) → the process and how to signal it. With
# a pty, its terminal is the command's stdin, stdout, stderr and controlling terminal.
Started = tuple[RunningCommand, Callable[[int], None]]
ExecStarter = Callable[[list[str], dict[str, str], str | None, Pty | None], Awaitable[Started]]
# Maps a finished command's raw exit code and first stderr bytes (e.g. a runtime's "not found") to the
# code the client sees.
ExitMapper = Callable[[int, bytes], int]


class ExecError(Exception):
    """An exec request the router refuses; the message is for the client."""


class ExecNotFound(ExecError):
    pass


@dataclass
class ExecRequest:
    exec_id: str
    argv: list[str]
    env: dict[str, str]
    workdir: str | None
    timeout_s: float | None
    pty: PtySettings | None = None


class TaskSession:
    def __init__(self, task_id: str, clock: Clock, starter: ExecStarter, exit_mapper: ExitMapper) -> None:
        self.task_id = task_id
        self.stdout = OutputBuffer()
        self.stderr = OutputBuffer()
        self.stdin = OrderedStdin(None)
        self.execs: dict[str, ExecProcess] = {}
        self.exited = False
        self.readiness: Readiness | None = None  # a sandbox with a readiness probe
        self._clock = clock
        self._starter = starter
        self._exit_mapper = exit_mapper
        self._runs: set[asyncio.Task[None]] = set()
        self.last_active = clock.monotonic()

    def touch(self) -> None:
        self.last_active = self._clock.monotonic()

    def idle_for(self) -> float:
        """Seconds since anything happened; 0 while an exec runs."""
        if any(e.exit_code is None for e in self.execs.values()):
            return 0.0
        return self._clock.monotonic() - self.last_active

    def exec(self, exec_id: str) -> ExecProcess:
        self.touch()
        found = self.execs.get(exec_id)
        if found is None:
            raise ExecNotFound(f"No exec {exec_id} in task {self.task_id}")
        return found

    async def start_exec(self, req: ExecRequest) -> None:
        if req.exec_id in self.execs:  # a retried start: the exec id is the client's idempotency key
            return
        if self.exited:
            raise ExecError(f"Task {self.task_id} has finished; it runs no more commands")
        if not req.argv:
            raise ExecError("An exec needs a command")
        self.touch()
        pty = Pty(req.pty) if req.pty is not None else None
        env = {**req.pty.env, **req.env} if req.pty is not None else req.env
        try:
            proc, kill = await self._starter(req.argv, env, req.workdir, pty)
        except BaseException as exc:
            if pty is not None:
                pty.close_unused()
            if isinstance(exc, FileNotFoundError):
                self.execs[req.exec_id] = await self._not_found(req)
                return
            raise
        process = ExecProcess(req.exec_id, proc, kill, pty=pty)
        self.execs[req.exec_id] = process
        run = asyncio.create_task(self._run(process, req.timeout_s))
        self._runs.add(run)
        run.add_done_callback(self._runs.discard)

    async def _run(self, process: ExecProcess, timeout_s: float | None) -> None:
        try:
            await process.run(timeout_s, self._exit_mapper)
        finally:
            self.touch()

    async def _not_found(self, req: ExecRequest) -> ExecProcess:
        """What a shell does for a command that does not exist: a message on stderr, exit code 127."""
        process = ExecProcess(req.exec_id, None, lambda signum: None)
        await process.stderr.append(f"{req.argv[0]}: command not found\n".encode())
        for buffer in (process.stdout, process.stderr):
            await buffer.close()
        process.stdin.close()
        process.exit_code = COMMAND_NOT_FOUND
        process.done.set()
        return process

    async def close(self) -> None:
        """The task's container exited: its commands went with it."""
        self.exited = True
        if self.readiness is not None:
            self.readiness.mark_exited()
        for process in self.execs.values():
            if process.exit_code is None:
                process.kill(9)
        await asyncio.gather(*self._runs, return_exceptions=True)
