"""Sandbox readiness probes (`Sandbox.create(readiness_probe=...)`, `Sandbox.wait_until_ready()`): the worker
runs a sandbox's probe every interval from its start until it first succeeds, and the command router's
SandboxWaitUntilReady waits for that moment. An exec probe is a command run inside the sandbox (exit code 0 is
success); a TCP probe is a connection to the port on the sandbox's own loopback, made from a socket created in
the sandbox's network namespace, so it works whatever the sandbox's network (blocked, allowlisted or open).
Probes are not activity: they never keep an idle sandbox alive."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import threading
from collections.abc import Awaitable, Callable

from berth.clock import Clock
from berth.domain.spec import ReadinessProbe
from berth.worker.execs import RunningCommand

log = logging.getLogger("berth.worker.probes")

CLONE_NEWNET = 0x40000000
EXEC_PROBE_TIMEOUT_S = 10.0  # an exec probe that hangs this long counts as a failure and is killed
CONNECT_TIMEOUT_S = 1.0
# A task's network namespace (a path under /var/run/netns or /proc/<pid>/ns/net); None: the host's own.
NetnsLookup = Callable[[], Awaitable[str | None]]
Check = Callable[[], Awaitable[bool]]
# Starts a command in the task's container (berth.worker.session.ExecStarter, without a terminal).
ExecStarter = Callable[
    [list[str], dict[str, str], str | None, None], Awaitable[tuple[RunningCommand, Callable[[int], None]]]
]


class NotReady(Exception):
    """The sandbox exited before its probe ever succeeded."""


class Readiness:
    """When a sandbox's probe first succeeded (wall-clock time), or that it exited before it did."""

    def __init__(self) -> None:
        self.ready_at: float | None = None
        self.exited = False
        self._changed = asyncio.Event()
        self._prober: asyncio.Task[None] | None = None

    def start(self, probe: ReadinessProbe, check: Check, clock: Clock) -> None:
        """Probe from now on, until the first success or the sandbox's exit."""
        self._prober = asyncio.create_task(probe_until_ready(probe, check, self, clock))

    def mark_ready(self, at: float) -> None:
        if self.ready_at is None:
            self.ready_at = at
            self._changed.set()

    def mark_exited(self) -> None:
        self.exited = True
        self._changed.set()
        if self._prober is not None:
            self._prober.cancel()

    async def wait(self, timeout_s: float) -> float:
        """The time it became ready; NotReady if it exited first, TimeoutError after timeout_s."""
        if self.ready_at is None and not self.exited:
            await asyncio.wait_for(self._changed.wait(), timeout_s)
        if self.ready_at is not None:
            return self.ready_at
        raise NotReady("The sandbox exited before its readiness probe succeeded")


async def probe_until_ready(probe: ReadinessProbe, check: Check, readiness: Readiness, clock: Clock) -> None:
    """Run `check` every interval (counted from the end of the last run) until it first succeeds."""
    interval = max(probe.interval_ms, 1) / 1000
    while readiness.ready_at is None and not readiness.exited:
        try:
            ok = await check()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a probe that cannot run yet (the container still starting) has failed
            log.debug("readiness probe failed: %s", exc)
            ok = False
        if ok:
            readiness.mark_ready(clock.now())
            return
        await asyncio.sleep(interval)


def exec_check(argv: tuple[str, ...], starter: ExecStarter, timeout_s: float = EXEC_PROBE_TIMEOUT_S) -> Check:
    async def check() -> bool:
        proc, kill = await starter(list(argv), {}, None, None)
        try:
            await asyncio.wait_for(proc.communicate(), timeout_s)
        except TimeoutError:
            kill(signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            return False
        return proc.returncode == 0

    return check


def tcp_check(port: int, netns: NetnsLookup, timeout_s: float = CONNECT_TIMEOUT_S) -> Check:
    async def check() -> bool:
        path = await netns()
        sock = await asyncio.to_thread(socket_in_netns, path) if path else socket.socket()
        with sock:
            sock.setblocking(False)
            try:
                await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port)), timeout_s)
            except (OSError, TimeoutError):
                return False
        return True

    return check


def socket_in_netns(path: str) -> socket.socket:
    """A TCP socket that belongs to the network namespace at `path`. setns(2) moves only the calling thread,
    so it is made in a thread of its own that ends right after: no other work ever runs in that namespace."""
    made: list[socket.socket] = []
    failed: list[BaseException] = []

    def enter_and_make() -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({path}): {os.strerror(err)}")
            finally:
                os.close(fd)
            made.append(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=enter_and_make, name="berth-netns-socket", daemon=True)
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    return made[0]


def start_readiness(probe: ReadinessProbe, starter: ExecStarter, netns: NetnsLookup, clock: Clock) -> Readiness:
    """A sandbox's readiness, probed from now on."""
    readiness = Readiness()
    check = tcp_check(probe.tcp_port, netns) if probe.tcp_port else exec_check(probe.exec_argv, starter)
    readiness.start(probe, check, clock)
    return readiness
