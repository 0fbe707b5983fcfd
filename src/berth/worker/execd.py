"""The fast exec path of OCI sandboxes: berth-execd (execd.c beside this file), a small static helper that
runs inside each sandbox container and starts exec'd commands there by fork+exec, so an exec inherits
everything the sandbox's entrypoint has (namespaces, cgroup, user, capabilities, rlimits, seccomp filter,
no_new_privs) and costs a message instead of a `crun exec` (a process that joins the namespaces, reads the
spec and loads the seccomp filter again: most of an exec's 14 ms).

The worker holds one end of a SOCK_SEQPACKET socket pair; crun hands the other to the container as fd 3
(`--preserve-fds 1`). crun itself keeps that end open while the container runs, so execd answers over it
once, with one end of a fresh pair that only execd's server holds the other end of: when that closes, execd
is gone. The entrypoint holds neither. An exec sends its argv, environment,
working directory and either three pipe ends (SCM_RIGHTS) or a terminal request; execd answers with the
command's pid (and the terminal's master, opened in the container's own devpts), or why it could not start
it, and later with its wait status. Where the helper can't be built (no C compiler) or an exec doesn't fit
in a message, `crun exec` remains the path."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import logging
import os
import signal
import socket
import struct
from collections.abc import Callable
from pathlib import Path

from berth.worker import native

log = logging.getLogger("berth.worker.execd")

SOURCE = Path(__file__).with_name("execd.c")
IN_CONTAINER = "/__berth/execd"
CONTROL_FD = 3
MAX_MESSAGE = 1 << 20  # execd's receive buffer: an exec whose argv and env are larger goes through crun exec
_HEAD = struct.Struct("<IIIHHII")  # type, id, flags, rows, cols, argc, envc
_REPLY = struct.Struct("<IIii")  # type, id, value, stage
_STAGE_CHDIR = 1


class HelperGone(Exception):
    """The container's execd is not there to answer (the container ended, or something in it killed execd)."""


def build(cache: Path) -> Path | None:
    """The execd binary for this source, compiled once per host (static, so it runs in any image); None when
    there is no C compiler, and `crun exec` stays the path."""
    return native.compile_once(SOURCE, cache, "execd", ["-static", "-O2"], "sandbox execs go through `crun exec`")


def entrypoint_message(argv: list[str], env: dict[str, str], cwd: str) -> bytes:
    """What `execd --stdin` (a pooled runsc container's init) reads before it becomes the entrypoint: u32
    length, u32 argc, u32 envc, then NUL-terminated cwd, argv and env."""
    strings = [cwd, *argv, *(f"{k}={v}" for k, v in env.items())]
    body = struct.pack("<II", len(argv), len(env)) + b"".join(x.encode() + b"\0" for x in strings)
    return struct.pack("<I", len(body)) + body


def socket_pair() -> tuple[socket.socket, socket.socket]:
    """(the worker's end, the container's end): the container's end goes to `crun run` as fd 3."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with contextlib.suppress(OSError):  # room for a large environment in one message (root may force it)
        ours.setsockopt(socket.SOL_SOCKET, 32, MAX_MESSAGE * 2)  # SO_SNDBUFFORCE
    return ours, theirs


class _Stdin:
    """A pipe's write end, as OrderedStdin writes to it."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._pending = bytearray()
        os.set_blocking(fd, False)

    def write(self, data: bytes) -> None:
        self._pending += data

    async def drain(self) -> None:
        while self._pending and self._fd >= 0:
            try:
                del self._pending[: os.write(self._fd, self._pending)]
            except BlockingIOError:
                await asyncio.sleep(0.005)
            except OSError as exc:  # the command closed its stdin
                self._pending.clear()
                raise ConnectionResetError(str(exc)) from exc

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class HelperProcess:
    """One command execd started: what ExecProcess and the readiness probes use of a subprocess."""

    def __init__(
        self,
        stdout: asyncio.StreamReader | None,
        stderr: asyncio.StreamReader | None,
        stdin: _Stdin | None,
        exited: asyncio.Future[int],
        signal_it: Callable[[int], None],
    ) -> None:
        self.stdout, self.stderr, self.stdin = stdout, stderr, stdin
        self._exited = exited
        self._signal = signal_it
        self.returncode: int | None = None

    async def wait(self) -> int:
        self.returncode = await asyncio.shield(self._exited)
        return self.returncode

    async def communicate(self) -> tuple[bytes, bytes]:
        if self.stdin is not None:
            self.stdin.close()
        out, err = await asyncio.gather(_read_all(self.stdout), _read_all(self.stderr))
        await self.wait()
        return out, err

    def send_signal(self, signum: int) -> None:
        if self.returncode is None and not self._exited.done():
            self._signal(signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


async def _read_all(reader: asyncio.StreamReader | None) -> bytes:
    return await reader.read() if reader is not None else b""


def _code(status: int) -> int:
    """A wait status as `crun exec` reports it: the exit code, or 128 + the signal that ended it."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)


async def _reader(fd: int) -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0))
    return reader


async def _failed(message: str, code: int) -> HelperProcess:
    """A command that never ran: its message on stderr, as a runtime prints it, and its code."""
    stderr = asyncio.StreamReader()
    stderr.feed_data(message.encode())
    stderr.feed_eof()
    stdout = asyncio.StreamReader()
    stdout.feed_eof()
    done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    done.set_result(code)
    return HelperProcess(stdout, stderr, None, done, lambda signum: None)


class ExecHelper:
    """The worker's end of one container's execd: `bootstrap` is the pair crun passed on, until execd's hello
    hands over the socket that only its server shares."""

    def __init__(self, bootstrap: socket.socket) -> None:
        self._sock = bootstrap
        self._sock.setblocking(False)
        self._ids = itertools.count(1)
        self._starting: dict[int, asyncio.Future[tuple[int, int, int | None]]] = {}
        self._exits: dict[int, asyncio.Future[int]] = {}
        self._ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.gone = False
        asyncio.get_running_loop().add_reader(bootstrap.fileno(), self._hello)

    def _recv(self) -> tuple[bytes, list[int]] | None:
        """One message from execd and the descriptors it passed; None when nothing is there yet, and an empty
        message once the connection is gone."""
        try:
            data, fds, _, _ = socket.recv_fds(self._sock, _REPLY.size, 1)
        except BlockingIOError:
            return None
        except OSError:
            return b"", []
        return data, fds

    def _hello(self) -> None:
        got = self._recv()
        if got is None:
            return
        data, fds = got
        if len(data) < _REPLY.size or _REPLY.unpack(data)[0] != ord("H") or not fds:
            for fd in fds:
                os.close(fd)
            self.close()  # the container ended before execd ran
            return
        asyncio.get_running_loop().remove_reader(self._sock.fileno())
        self._sock.close()
        self._sock = socket.socket(fileno=fds[0])
        self._sock.setblocking(False)
        asyncio.get_running_loop().add_reader(self._sock.fileno(), self._readable)
        self._ready.set_result(None)

    def _readable(self) -> None:
        got = self._recv()
        if got is None:
            return
        data, fds = got
        if len(data) < _REPLY.size:
            self.close()
            return
        kind, exec_id, value, stage = _REPLY.unpack(data)
        if kind == ord("E"):
            exit_future = self._exits.pop(exec_id, None)
            if exit_future is not None and not exit_future.done():
                exit_future.set_result(_code(value))
            return
        start_future = self._starting.pop(exec_id, None)
        if start_future is None or start_future.done():
            for fd in fds:
                os.close(fd)
            return
        start_future.set_result((kind, value if kind == ord("S") else stage * 1000 + value, fds[0] if fds else None))

    def close(self) -> None:
        """The container ended (or execd did): pending starts fail, running commands count as killed."""
        if self.gone:
            return
        self.gone = True
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
        self._sock.close()
        if not self._ready.done():
            self._ready.set_exception(HelperGone("the sandbox's execd never started"))
            self._ready.exception()  # (retrieved: nobody may be waiting)
        for start_future in self._starting.values():
            if not start_future.done():
                start_future.set_exception(HelperGone("the sandbox's execd is gone"))
        for exit_future in self._exits.values():
            if not exit_future.done():
                exit_future.set_result(128 + signal.SIGKILL)
        self._starting.clear()
        self._exits.clear()

    def fits(self, argv: list[str], env: dict[str, str], cwd: str) -> bool:
        size = _HEAD.size + len(cwd.encode()) + 1 + sum(len(a.encode()) + 1 for a in argv)
        size += sum(len(k.encode()) + len(v.encode()) + 2 for k, v in env.items())
        return size <= MAX_MESSAGE and not any("\0" in a for a in argv) and not self.gone

    async def start_main(self, argv: list[str], env: dict[str, str], cwd: str) -> HelperProcess:
        """Start a pooled container's entrypoint (execd --wait), with pipes for its stdio. Its exit status is
        the container's: execd exits with it. A command that can't run says so on its stderr (exit 126/127)."""
        if not self.fits(argv, env, cwd):
            raise HelperGone("the entrypoint does not fit in one message to execd")
        process, _ = await self.start(argv, env, cwd, None, kind="M")
        return process

    async def start(
        self, argv: list[str], env: dict[str, str], cwd: str, terminal: tuple[int, int] | None, kind: str = "X"
    ) -> tuple[HelperProcess, int | None]:
        """Start a command: the process, and with `terminal` (rows, cols), the master of its terminal.
        FileNotFoundError for a command that does not exist, as crun exec's caller expects."""
        await asyncio.shield(self._ready)
        if self.gone:
            raise HelperGone("the sandbox's execd is gone")
        exec_id = next(self._ids)
        strings = [cwd, *argv, *(f"{k}={v}" for k, v in env.items())]
        rows, cols = terminal or (0, 0)
        head = _HEAD.pack(ord(kind), exec_id, 1 if terminal else 0, rows, cols, len(argv), len(env))
        payload = head + b"".join(s.encode() + b"\0" for s in strings)
        ours: list[int] = []
        theirs: list[int] = []
        if terminal is None:
            for_stdin, for_stdout, for_stderr = os.pipe(), os.pipe(), os.pipe()
            theirs = [for_stdin[0], for_stdout[1], for_stderr[1]]
            ours = [for_stdin[1], for_stdout[0], for_stderr[0]]
        started: asyncio.Future[tuple[int, int, int | None]] = asyncio.get_running_loop().create_future()
        exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._starting[exec_id] = started
        self._exits[exec_id] = exited
        try:
            try:
                socket.send_fds(self._sock, [payload], theirs)
            finally:
                for fd in theirs:
                    os.close(fd)
            reply, value, master = await started
        except BaseException as exc:
            self._starting.pop(exec_id, None)
            self._exits.pop(exec_id, None)
            for fd in ours:
                os.close(fd)
            if isinstance(exc, OSError) and not isinstance(exc, HelperGone):
                raise HelperGone(f"cannot reach the sandbox's execd: {exc}") from exc
            raise
        if reply != ord("S"):
            self._exits.pop(exec_id, None)
            for fd in ours:
                os.close(fd)
            if kind == "M":
                raise HelperGone(f"execd refused the entrypoint: {os.strerror(value % 1000)}")
            return await self._refused(argv, cwd, value // 1000, value % 1000), None
        kill = self._signaller(exec_id)
        if terminal is not None:
            return HelperProcess(None, None, None, exited, kill), master
        stdout, stderr = await _reader(ours[1]), await _reader(ours[2])
        return HelperProcess(stdout, stderr, _Stdin(ours[0]), exited, kill), None

    async def _refused(self, argv: list[str], cwd: str, stage: int, err: int) -> HelperProcess:
        if stage == _STAGE_CHDIR:
            return await _failed(f"berth: chdir to `{cwd}`: {os.strerror(err)}\n", 126)
        if err == errno.ENOENT:
            raise FileNotFoundError(err, f"executable file `{argv[0]}` not found in $PATH")
        return await _failed(f"berth: exec `{argv[0]}`: {os.strerror(err)}\n", 126)

    def _signaller(self, exec_id: int) -> Callable[[int], None]:
        def send(signum: int) -> None:
            if self.gone:
                return
            with contextlib.suppress(OSError):
                self._sock.send(_HEAD.pack(ord("K"), exec_id, signum, 0, 0, 0, 0))

        return send
