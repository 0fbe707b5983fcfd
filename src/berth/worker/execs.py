"""What the command router serves from: every byte a sandbox's entrypoint or one of its execs wrote, kept
for the task's lifetime so a client that reconnects re-reads from its byte offset, and the stdin and exit
status of each exec. Binary-safe throughout: the sandbox filesystem API streams file contents this way."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from berth.worker.pty import Pty, take_terminal

log = logging.getLogger("berth.worker.execs")

READ_CHUNK = 64 * 1024
EXEC_TIMEOUT_CODE = 124  # what an exec killed at its timeout_secs exits with (as `timeout(1)` does)
COMMAND_NOT_FOUND = 127  # the shell's code for a command that does not exist
# Where the client's Sandbox.filesystem API expects its helper (berth.worker.fs_tools stands in for it).
FS_TOOLS_PATH = "/__modal/.bin/modal-sandbox-fs-tools"


class OutputBuffer:
    """An append-only byte stream with readers that wait for more until it is closed."""

    def __init__(self) -> None:
        self._data = bytearray()
        self._closed = False
        self._changed = asyncio.Condition()
        self.readers = 0  # read_from generators running now
        self.attached = False  # whether any reader has started
        self.delivered = 0  # the furthest offset a reader has handed on

    @property
    def drained(self) -> bool:
        """Closed, and read to the end, or left by the readers that came. Output nobody has started reading
        is not drained: `modal container exec` prints the output from a reader it starts with the exec and
        exits as soon as the wait returns, so a wait answered before that reader attached lost the output."""
        return self._closed and (self.delivered >= len(self._data) or (self.readers == 0 and self.attached))

    @property
    def size(self) -> int:
        return len(self._data)

    def head(self, n: int = 512) -> bytes:
        return bytes(self._data[:n])

    async def append(self, chunk: bytes) -> None:
        async with self._changed:
            self._data += chunk
            self._changed.notify_all()

    async def close(self) -> None:
        async with self._changed:
            self._closed = True
            self._changed.notify_all()

    def _readable(self, offset: int) -> Callable[[], bool]:
        return lambda: self._closed or len(self._data) > offset

    async def read_from(self, offset: int) -> AsyncIterator[tuple[int, bytes]]:
        """(offset, bytes) chunks from `offset` on, until the stream is closed and fully read."""
        offset = max(0, offset)
        self.readers += 1
        self.attached = True
        try:
            while True:
                async with self._changed:
                    await self._changed.wait_for(self._readable(offset))
                    chunk = bytes(self._data[offset : offset + READ_CHUNK])
                    closed = self._closed
                if chunk:
                    yield offset, chunk
                    offset += len(chunk)
                    self.delivered = max(self.delivered, offset)
                elif closed:
                    return
        finally:
            self.readers -= 1

    async def until_drained(self, timeout_s: float) -> None:
        """Give a reader that is streaming this output up to timeout_s to hand on what is left: an exit status
        sent before the last output would let a client that prints the output as it comes exit without it."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not self.drained and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)


async def pump(
    reader: asyncio.StreamReader | None, into: OutputBuffer, tee: Callable[[bytes], None] | None = None
) -> None:
    try:
        while reader is not None and (chunk := await reader.read(READ_CHUNK)):
            await into.append(chunk)
            if tee is not None:
                tee(chunk)
    finally:
        await into.close()


class StdinWriter(Protocol):
    """What stdin is written through: a pipe's StreamWriter, or a pty's input side."""

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def close(self) -> None: ...


class StdinOutOfOrder(Exception):
    """A write at an offset past what was written so far (bytes are missing in between)."""


class OrderedStdin:
    """Stdin written with byte offsets: a retried write (same offset) is written once."""

    def __init__(self, writer: StdinWriter | None) -> None:
        self._writer = writer
        self.written = 0
        self.closed = writer is None
        self._lock = asyncio.Lock()

    async def write(self, offset: int, data: bytes, eof: bool) -> None:
        async with self._lock:
            if offset > self.written:
                raise StdinOutOfOrder(f"stdin write at offset {offset}, but only {self.written} bytes were written")
            fresh = data[self.written - offset :]
            if fresh and not self.closed and self._writer is not None:
                self._writer.write(fresh)
                with contextlib.suppress(ConnectionError):
                    await self._writer.drain()
            self.written = max(self.written, offset + len(data))
            if eof:
                self.close()

    def close(self) -> None:
        if not self.closed and self._writer is not None:
            self.closed = True
            with contextlib.suppress(OSError, RuntimeError):
                self._writer.close()


class RunningCommand(Protocol):
    """A started exec as the router uses it: an asyncio subprocess (`crun exec`, the process runtime) or a
    command berth-execd started inside the container (berth.worker.execd.HelperProcess)."""

    @property
    def stdout(self) -> asyncio.StreamReader | None: ...

    @property
    def stderr(self) -> asyncio.StreamReader | None: ...

    @property
    def stdin(self) -> StdinWriter | None: ...

    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int: ...

    async def communicate(self) -> tuple[bytes, bytes]: ...

    def kill(self) -> None: ...


@dataclass
class ExecProcess:
    """One command run in a task's container by TaskExecStart."""

    exec_id: str
    proc: RunningCommand | None  # None: the command never started
    kill: Callable[[int], None]  # signals the command itself (inside the container's pid namespace)
    stdout: OutputBuffer = field(default_factory=OutputBuffer)
    stderr: OutputBuffer = field(default_factory=OutputBuffer)
    pty: Pty | None = None  # a PTY exec: the terminal's output is its stdout, and stdin goes to the terminal
    stdin: OrderedStdin = field(init=False)
    exit_code: int | None = None
    timed_out: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        if self.pty is not None:
            self.stdin = OrderedStdin(self.pty.input)
        else:
            self.stdin = OrderedStdin(self.proc.stdin if self.proc is not None else None)

    def _pumps(self) -> asyncio.Future[Any]:
        assert self.proc is not None
        if self.pty is not None:
            self.pty.start_reading()
            # the terminal carries the command's stdout and stderr; a runtime's own errors (crun's "not
            # found") come on its stderr pipe, if it has one, and become the exec's stderr
            return asyncio.gather(pump(self.pty.output, self.stdout), pump(self.proc.stderr, self.stderr))
        return asyncio.gather(pump(self.proc.stdout, self.stdout), pump(self.proc.stderr, self.stderr))

    async def run(self, timeout_s: float | None, exit_code: Callable[[int, bytes], int]) -> None:
        assert self.proc is not None
        pumps = self._pumps()
        try:
            code = await asyncio.wait_for(self.proc.wait(), timeout_s) if timeout_s else await self.proc.wait()
        except TimeoutError:
            self.timed_out = True
            self.kill(signal.SIGKILL)
            await self.proc.wait()
            code = EXEC_TIMEOUT_CODE
        try:  # a background child of the command may hold the pipes open: don't wait for it forever
            await asyncio.wait_for(asyncio.shield(pumps), 2.0)
        except TimeoutError:
            pumps.cancel()
            if self.pty is not None:
                self.pty.close()
            await self.stdout.close()
            await self.stderr.close()
        if not self.timed_out:  # (a runtime's message about the command lands on the terminal in a PTY exec)
            code = exit_code(code, (self.stderr if self.pty is None else self.stdout).head())
        self.stdin.close()
        self.exit_code = code
        self.done.set()


def kill_pid_file(path: str, fallback: asyncio.subprocess.Process) -> Callable[[int], None]:
    """A signaller for a process that a runtime helper (crun exec) started and wrote the pid of."""

    def kill(signum: int) -> None:
        try:
            with open(path) as f:
                os.kill(int(f.read().strip()), signum)
        except (OSError, ValueError):
            with contextlib.suppress(ProcessLookupError):
                fallback.send_signal(signum)

    return kill


def exec_stdio(tty: int | None) -> dict[str, Any]:
    """create_subprocess_exec's stdio arguments for an exec: pipes, or a pty slave that becomes the
    command's controlling terminal (in its own session)."""
    if tty is None:
        pipe = asyncio.subprocess.PIPE
        return {"stdin": pipe, "stdout": pipe, "stderr": pipe, "start_new_session": True}
    return {"stdin": tty, "stdout": tty, "stderr": tty, "start_new_session": True, "preexec_fn": take_terminal}
