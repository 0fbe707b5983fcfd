"""Pseudo-terminals for PTY execs (`modal shell`, `modal container exec`, `exec(pty=True)`): the command gets
the slave side as its stdin, stdout and stderr and as its controlling terminal (so a shell has job control
and ^C reaches the foreground job); the router reads the master side into the exec's stdout and writes the
client's stdin to it. The window size is set once, at start: the 1.6.4 client has no resize RPC."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import struct
import termios
from dataclasses import dataclass

log = logging.getLogger("berth.worker.pty")

READ_CHUNK = 64 * 1024
STDIN_STALL_S = 30.0
DEFAULT_ROWS, DEFAULT_COLS = 24, 80
DEFAULT_TERM = "xterm-256color"


@dataclass
class PtySettings:
    rows: int
    cols: int
    env: dict[str, str]  # TERM, COLORTERM, TERM_PROGRAM as the client's terminal has them


def take_terminal() -> None:
    """In the child, after setsid: make its stdin (the pty slave) the session's controlling terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Pty:
    """One pty pair; the master is read into a StreamReader until every holder of the slave has closed it."""

    def __init__(self, settings: PtySettings) -> None:
        self.rows, self.cols = settings.rows or DEFAULT_ROWS, settings.cols or DEFAULT_COLS
        self.master, slave = os.openpty()
        self.slave: int | None = slave
        self._set_size()
        self.output = asyncio.StreamReader()
        self._pending = bytearray()  # stdin not yet taken by the terminal
        self._closed = False

    def _set_size(self) -> None:
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", self.rows, self.cols, 0, 0))
        os.set_blocking(self.master, False)

    def adopt(self, master: int) -> None:
        """Use a terminal the runtime allocated (crun's, inside the container's /dev/pts, handed over
        through its console socket) instead of this one."""
        self._close_slave()
        os.close(self.master)
        self.master = master
        self._set_size()

    def _close_slave(self) -> None:
        if self.slave is not None:
            with contextlib.suppress(OSError):
                os.close(self.slave)
            self.slave = None

    def start_reading(self) -> None:
        """Call once the command holds the slave: the parent's copy is closed, so the master reads EOF (EIO)
        when the command and its children are gone."""
        self._close_slave()
        asyncio.get_running_loop().add_reader(self.master, self._readable)

    def _readable(self) -> None:
        try:
            chunk = os.read(self.master, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:  # EIO: no process holds the slave any more
            chunk = b""
        if chunk:
            self.output.feed_data(chunk)
        else:
            self.close()

    @property
    def input(self) -> PtyInput:
        return PtyInput(self)

    def write(self, data: bytes) -> None:
        self._pending += data

    async def drain(self) -> None:
        """Write what is pending to the terminal, waiting while its input queue is full (a command that reads
        nothing), for at most STDIN_STALL_S: past that the rest is dropped rather than hold the caller."""
        deadline = asyncio.get_running_loop().time() + STDIN_STALL_S
        while self._pending and not self._closed:
            try:
                del self._pending[: os.write(self.master, self._pending)]
            except BlockingIOError:
                if asyncio.get_running_loop().time() > deadline:
                    log.warning(
                        "a PTY exec's terminal took no input for %ss; %d bytes dropped",
                        STDIN_STALL_S,
                        len(self._pending),
                    )
                    self._pending.clear()
                    return
                await asyncio.sleep(0.02)
            except OSError:
                self._pending.clear()
                return

    def close(self) -> None:
        """Stop reading and hang up; the reader sees EOF. Idempotent."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self.master)
        with contextlib.suppress(OSError):
            os.close(self.master)
        self.output.feed_eof()

    def close_unused(self) -> None:
        """The command never started: nothing holds the slave but us."""
        self._close_slave()
        self.close()


class PtyInput:
    """The stdin side, as OrderedStdin writes through it. Stdin EOF does not hang up the terminal (the
    command would get SIGHUP): the terminal closes when the command exits."""

    def __init__(self, pty: Pty) -> None:
        self._pty = pty

    def write(self, data: bytes) -> None:
        self._pty.write(data)

    async def drain(self) -> None:
        await self._pty.drain()

    def close(self) -> None:
        return None
