"""OCI runtime (crun by default, runc or runsc where installed): each container runs from its own
overlayfs root over its image's layers, in fresh pid/mount/ipc/uts/net namespaces, with cgroup limits
from the function's cpu= and memory=, on the berth0 bridge with NAT to the outside. The modal client
comes from bind-mounted /pkg and /__modal/deps; the host CA bundle and resolv.conf are bind-mounted.
Seccomp, capabilities and masked paths: see berth.worker.oci_config and berth.worker.seccomp.

runsc (gVisor) runs the same bundle inside its own user-space kernel, with the differences in
RUNSC_FLAGS: the ptrace platform (kvm hangs on these machines), and the network of the namespace runsc
is started in (`--network=host`, with runsc started by nsenter inside the container's own netns and no
network namespace in the spec; gVisor's sandbox network fails here). It keeps its state apart from
crun's, under RUNSC_STATE_ROOT. runsc's commands reach a running sandbox through its control socket, an
abstract unix socket (`@runsc-sandbox.<id>`), which lives in the network namespace runsc was started in:
every later command for that container (state, exec, kill, delete) runs there too (`_control`), or runsc
finds no sandbox, calls the container stopped, and a kill never arrives. An exec's pid is gVisor's own
(not a host pid): it is signalled with `runsc kill --pid`."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from modal_proto import api_pb2

from berth.domain.spec import TaskSpec
from berth.worker import (
    berth_loop,
    buckets,
    cluster_net,
    container_loop,
    egress,
    execd,
    fs_tools,
    gpu,
    gvisor_statx,
    network,
    seccomp,
    userns,
)
from berth.worker.cgroups import ContainerCgroup
from berth.worker.execd import ExecHelper, HelperGone, HelperProcess
from berth.worker.execs import (
    COMMAND_NOT_FOUND,
    FS_TOOLS_PATH,
    RunningCommand,
    StdinWriter,
    exec_stdio,
    kill_pid_file,
)
from berth.worker.files import FileSource, place_files
from berth.worker.layers import ImageManifest
from berth.worker.oci_config import Bind, ContainerConfig, build_config
from berth.worker.pty import Pty
from berth.worker.rootfs import RootfsCache
from berth.worker.sandbox_pool import (
    FUNCTION_REFILL_DELAY_S,
    REFILL_DELAY_S,
    PoolBook,
    PoolKey,
    PoolSettings,
    function_pool_key,
    pool_key,
)
from berth.worker.scratch import ScratchDisks
from berth.worker.standby import IN_CONTAINER as STANDBY_SOCKET
from berth.worker.standby import SERVER_URL as STANDBY_URL
from berth.worker.standby import StandbyServer

log = logging.getLogger("berth.oci")

CA_PATH = "/etc/ssl/certs/ca-certificates.crt"
CLONE_NEWUTS = 0x04000000
STATE_ROOT = "/run/berth/oci"
RUNSC_STATE_ROOT = "/run/berth/runsc"
# What `runsc exec` says (exit 128) when the sandbox ends while it waits for the command.
RUNSC_SANDBOX_GONE = b'urpc method "containerManager.WaitPID" failed'
# --overlay2=none: the root's writes go to the container's own overlay upper dir on the host, as on crun.
# --oci-seccomp: apply the spec's seccomp profile inside the sandbox too, so code sees the same denials.
RUNSC_FLAGS = ["--platform=ptrace", "--network=host", "--overlay2=none", "--oci-seccomp"]
# config.json carries the container's environment, secret values included: keep bundles in memory
# (a private tmpfs), never on disk under the data dir.
BUNDLE_ROOT = Path("/run/berth/bundles")
# Where a user-namespaced sandbox's root and idmapped views are mounted. crun opens the root from inside
# the user namespace, as a uid that is not host root: every directory above it must be searchable by
# others, which a data dir (0700, it holds the store) is not. 0711: nobody lists it.
VIEWS_ROOT = Path("/run/berth/roots")


def ensure_private_tmpfs(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if not os.path.ismount(path):
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0700,size=64m", "tmpfs", str(path)], check=True)


INNER = "/__berth"  # where a container finds its arguments file
LOOP_PATH = f"{INNER}/loop.py"  # Berth's container loop (berth.worker.berth_loop)
PIDS_LIMIT = 16384
# A sandbox with memory= gets this many pids per MiB (at least SANDBOX_MIN_PIDS): a fork bomb stops at
# the pids limit with EAGAIN before it has filled its memory, and each process keeps room to run.
SANDBOX_PIDS_PER_MB = 4
SANDBOX_MIN_PIDS = 512
# runsc: a sandbox's processes are capped inside gVisor, at one per RUNSC_MB_PER_PROCESS MiB of memory=
# (see gvisor_nproc_limit).
RUNSC_MB_PER_PROCESS = 6
RUNSC_MIN_PROCESSES = 16
RUNSC_PROCESSES = 1024  # without memory=: about 4 GiB of gVisor's host memory, 5k host threads
SANDBOX_DISK_MB = 10240
TINI = "/usr/bin/tini-static"
# How long a pooled function container's standby Python may take to import modal before it is given up (it
# imports at nice 19: on a busy host that takes a while), and a memory-snapshot standby to run its function's
# imports and snap=True enter hooks.
STANDBY_READY_S = 300.0
# After a function standby of a key failed, that key's containers start fresh for this long (a snapshot
# function's, whose own code failed in the standby, for good).
STANDBY_BACKOFF_S = 60.0
SNAPSHOT_READY_S = 900.0
POOLED_RUNSC_READY_S = 60.0  # how long a pooled runsc container may take to boot gVisor (on a busy host)
POOL_CLOSE_WAIT_S = 30.0  # how long a stopping worker waits for pooled containers still starting
IDLE_SWEEP_MIN_S = 1.0  # how often, at most, a waiting pooled container checks for idle pools
RESTORE_STATE = "__modal/restore-state.json"  # modal's config restore_state_path, under the container's root
OOM_EXIT = 137
# Environment the worker passes that describes the host, not the container.
_HOST_ONLY = {"PATH", "HOME", "LANG", "LC_ALL", "TZ", "SSL_CERT_DIR", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"}

ImageResolver = Callable[[str], ImageManifest]


def _published(source_file: str, name: str) -> Path:
    """A copy of one of Berth's own files that a container can bind-mount and run (on the bundles' tmpfs)."""
    target = BUNDLE_ROOT / name / name
    source = Path(source_file).read_bytes()
    if not target.exists() or target.read_bytes() != source:
        target.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(target.parent, 0o755)
        partial = target.with_suffix(".partial")
        partial.write_bytes(source)
        os.chmod(partial, 0o755)
        partial.replace(target)
    return target


def fs_tools_file() -> Path:
    """berth.worker.fs_tools as an executable file a container can bind-mount."""
    return _published(fs_tools.__file__, "modal-sandbox-fs-tools")


class RuntimeUnavailable(OSError):
    pass


def runtime_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeUnavailable(f"{name} is not installed; run `berth doctor --fix` (or scripts/setup-host.sh)")
    return path


def nofile_limit() -> int:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)


@dataclass(frozen=True)
class Limits:
    memory_mb: int  # hard limit; 0 = none
    cpu: float  # cores of CPU quota; 0 = none


def task_limits(spec: TaskSpec) -> Limits:
    """memory=(request, limit) and cpu=(request, limit) enforce the limit; a single value is both."""
    args = api_pb2.ContainerArguments.FromString(spec.container_arguments)
    res = args.function_def.resources
    return Limits(
        memory_mb=res.memory_mb_max or spec.memory_mb,
        cpu=(res.milli_cpu_max / 1000) if res.milli_cpu_max else spec.cpu,
    )


def device_entry(path: str) -> dict[str, object]:
    rdev = os.stat(path).st_rdev
    return {"path": path, "major": os.major(rdev), "minor": os.minor(rdev)}


@dataclass
class Sandbox:
    """The host-side pieces of one container, torn down together."""

    container_id: str
    bundle: Path
    cgroup: ContainerCgroup
    limits: Limits
    net: network.ContainerNet | None = None
    cluster: cluster_net.ClusterLink | None = None  # a clustered function's link to its peers
    buckets: list[buckets.MountedBucket] = field(default_factory=list)  # CloudBucketMounts (s3fs)
    mounted: list[Path] = field(default_factory=list)  # unmounted in this order
    cwd: str = "/root"  # where its command (and, by default, its execs) run
    userns: bool = False  # root inside is host uid userns.HOST_BASE (sandboxes on crun/runc)
    rootfs: Path = Path()  # the merged overlay the container runs on
    upper: Path = Path()  # the overlay's upper layer: what the container changed
    helper: ExecHelper | None = None  # berth-execd in the container: execs without `crun exec`
    env: dict[str, str] = field(default_factory=dict)  # its process's environment, which execs start from
    workdir: Path = Path()  # its task directory (a pooled one's own, until it is handed over)

    @property
    def views(self) -> Path:
        """A user-namespaced sandbox's mounts: its root, its layers' and volumes' idmapped views."""
        return VIEWS_ROOT / self.container_id


def mount_overlay(lower: list[str], upper: Path, work: Path, merged: Path) -> None:
    for d in (upper, work, merged):
        d.mkdir(parents=True, exist_ok=True)
    opts = f"lowerdir={':'.join(lower)},upperdir={upper},workdir={work}"
    out = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(merged)], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeUnavailable(f"cannot mount the container root (overlayfs): {out.stderr.strip()}")


def sandbox_pids_limit(memory_mb: int) -> int:
    if memory_mb <= 0:
        return PIDS_LIMIT
    return min(PIDS_LIMIT, max(SANDBOX_MIN_PIDS, memory_mb * SANDBOX_PIDS_PER_MB))


def gvisor_nproc_limit(memory_mb: int) -> int:
    """The process limit inside a gVisor sandbox (RLIMIT_NPROC, which gVisor's kernel enforces with EAGAIN at
    fork). On the ptrace platform each of its processes is host memory and host threads of gVisor's own
    (about 3.6 MiB and 5 threads), so the host's pids and memory cgroup would stop a fork bomb only by
    killing the whole sandbox: this stops it first, well inside both."""
    if memory_mb <= 0:
        return RUNSC_PROCESSES
    return max(RUNSC_MIN_PROCESSES, memory_mb // RUNSC_MB_PER_PROCESS)


def umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


def standard_binds(ca_bundle: Path | None) -> list[Bind]:
    binds = []
    if ca_bundle is not None:
        binds.append(Bind(str(ca_bundle), CA_PATH))
    if Path("/etc/resolv.conf").exists():
        binds.append(Bind(str(Path("/etc/resolv.conf").resolve()), "/etc/resolv.conf"))
    return binds


def write_hosts(rootfs: Path, *hostnames: str) -> None:
    etc = rootfs / "etc"
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "hosts").write_text(f"127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.1.1\t{' '.join(hostnames)}\n")


def runsc_pool_enabled() -> bool:
    """Whether runsc sandboxes take from the warm pool (BERTH_RUNSC_SANDBOX_POOL=0 turns it off)."""
    return os.environ.get("BERTH_RUNSC_SANDBOX_POOL", "1") != "0"


class OciContainer:
    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        on_exit: Callable[[int], str | None],
        kill: Callable[[int], None],
        stdio: tuple[asyncio.StreamReader, asyncio.StreamReader, StdinWriter] | None = None,
    ) -> None:
        """`stdio`: the entrypoint's own pipes (a pooled container's, from execd), instead of crun's."""
        self._proc = proc
        self._kill = kill
        stdin: StdinWriter | None
        if stdio is None:
            assert proc.stdout is not None and proc.stderr is not None
            stdout, stderr, stdin = proc.stdout, proc.stderr, proc.stdin
        else:
            stdout, stderr, stdin = stdio
        self.stdout: asyncio.StreamReader = stdout
        self.stderr = asyncio.StreamReader()
        self.stdin: StdinWriter | None = stdin
        self._on_exit = on_exit
        self._done = asyncio.ensure_future(self._relay(stderr))

    async def _relay(self, src: asyncio.StreamReader) -> int:
        """Copy the container's stderr, then append why it died when the runtime knows (e.g. OOM)."""
        while chunk := await src.read(65536):
            self.stderr.feed_data(chunk)
        code = await self._proc.wait()
        note = self._on_exit(code)
        if note:
            self.stderr.feed_data(note.encode())
        self.stderr.feed_eof()
        return code

    async def wait(self) -> int:
        return await self._done

    def signal(self, signum: int) -> None:
        if self._proc.returncode is None:
            self._kill(signum)

    def exited(self) -> None:
        """Nothing to do: when a container's init exits, the kernel ends its whole pid namespace."""


@dataclass(eq=False)
class Pooled:
    """A sandbox container started ahead, waiting for its entrypoint (berth.worker.sandbox_pool)."""

    sandbox: Sandbox
    proc: asyncio.subprocess.Process
    pool_id: str
    taken: bool = False
    standby: HelperProcess | None = None  # a function container's loop, waiting for its task (--standby)
    server: StandbyServer | None = None  # a memory-snapshot standby's stand-in for the server
    teardown: asyncio.Future[None] | None = None  # once it is being discarded (once only)


def set_hostname(pid: int, name: str) -> None:
    """Set the hostname in the UTS namespace of process `pid` (a pooled container's init, handed over to a
    task whose id is its hostname). setns(2) moves only the calling thread: a thread of its own, ended after."""
    failed: list[BaseException] = []

    def enter_and_set() -> None:
        try:
            fd = os.open(f"/proc/{pid}/ns/uts", os.O_RDONLY | os.O_CLOEXEC)
            try:
                if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWUTS) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns: {os.strerror(err)}")
            finally:
                os.close(fd)
            socket.sethostname(name)
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=enter_and_set, name="berth-uts", daemon=True)
    thread.start()
    thread.join()
    if failed:
        raise failed[0]


def reset_priority(init_pid: int) -> None:
    """Every thread of a container's processes back to nice 0: a pooled function container's standby ran at
    berth_loop.STANDBY_NICE until its hand-over (nice is per thread on Linux)."""
    pending = [init_pid]
    while pending:
        pid = pending.pop()
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                with contextlib.suppress(OSError):
                    os.setpriority(os.PRIO_PROCESS, int(task.name), 0)
                with contextlib.suppress(OSError):
                    pending += [int(child) for child in (task / "children").read_text().split()]


def container_init_pid(runtime_pid: int) -> int:
    """The container's init: the child of `crun run` (the runtime's process stays as its parent)."""
    children = Path(f"/proc/{runtime_pid}/task/{runtime_pid}/children").read_text().split()
    if not children:
        raise RuntimeUnavailable(f"container of runtime process {runtime_pid} is not running")
    return int(children[0])


class ConsoleSocket:
    """The listening end of crun's --console-socket: one connection, one fd (SCM_RIGHTS)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(path))
        self._sock.listen(1)
        self._sock.setblocking(False)

    async def receive(self, proc: asyncio.subprocess.Process, timeout_s: float = 30.0) -> int | None:
        """The master fd crun sends; None when crun exits (or times out) first."""
        loop = asyncio.get_running_loop()
        accept = asyncio.ensure_future(loop.sock_accept(self._sock))
        exited = asyncio.ensure_future(proc.wait())
        done, _ = await asyncio.wait({accept, exited}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        exited.cancel()
        if accept not in done:
            accept.cancel()
            return None
        conn, _ = accept.result()
        with conn:
            conn.settimeout(timeout_s)
            _, fds, _, _ = await asyncio.to_thread(socket.recv_fds, conn, 4096, 1)
        return fds[0] if fds else None

    def close(self) -> None:
        self._sock.close()
        with contextlib.suppress(OSError):
            self.path.unlink()


class OciRuntime:
    """Runs task containers with crun, runc or runsc. `images` maps an image id to its built layers."""

    isolated = True

    def __init__(
        self,
        name: str,
        rootfs: RootfsCache,
        images: ImageResolver,
        ca_bundle: Path | None,
        files: FileSource,
        sandbox_disk_mb: int = SANDBOX_DISK_MB,
        pool: PoolSettings | None = None,
        function_pool: PoolSettings | None = None,
    ) -> None:
        self._files = files
        self._pool: PoolBook[Pooled] = PoolBook(pool or PoolSettings(), time.monotonic)
        self._function_pool: PoolBook[Pooled] = PoolBook(function_pool or PoolSettings(), time.monotonic)
        # function pools whose standby failed: when (memory-snapshot ones, keyed by what they are of: for good)
        self._standby_failed: dict[PoolKey, float] = {}
        self._snapshot_failed: set[str] = set()
        self._pool_jobs: set[asyncio.Future[Any]] = set()
        self._teardowns: set[asyncio.Future[None]] = set()  # pooled containers being torn down (never cancelled)
        self._closing = False
        self._watchers: set[asyncio.Future[None]] = set()  # one per ready pooled container, until it goes
        self._disks = ScratchDisks(sandbox_disk_mb)
        self.name = name
        self.binary = runtime_binary(name)
        self.gvisor = name == "runsc"
        self._state_root = RUNSC_STATE_ROOT if self.gvisor else STATE_ROOT
        self._flags = RUNSC_FLAGS if self.gvisor else []
        Path(self._state_root).mkdir(parents=True, exist_ok=True)
        self._rootfs = rootfs
        self._images = images
        self._ca_bundle = ca_bundle
        self._sandboxes: dict[str, Sandbox] = {}
        self._idmapper = userns.IdMapper()
        self.oom_killed: set[str] = set()
        self._background: set[asyncio.Future[Any]] = set()
        self._execd: asyncio.Future[Path | None] | None = None
        self._statx: asyncio.Future[Path | None] | None = None
        network.ensure_bridge()
        ensure_private_tmpfs(BUNDLE_ROOT)
        self._prewarm_client()

    async def _execd_binary(self) -> Path | None:
        """berth-execd for sandboxes (built once, at the first sandbox); None: execs use `<runtime> exec`.
        runsc's 2022 build can't hand the container an fd (--preserve-fds), so its execs stay `runsc exec`
        (a pooled runsc container runs execd only as its holder, `execd --hold`: see _hand_over_gvisor)."""
        if self.gvisor:
            return None
        return await self._execd_build()

    async def _execd_build(self) -> Path | None:
        if self._execd is None:
            self._execd = asyncio.ensure_future(asyncio.to_thread(execd.build, BUNDLE_ROOT / "execd"))
        return await asyncio.shield(self._execd)

    async def _statx_binds(self, sandbox: Sandbox) -> list[Bind]:
        """runsc containers: the statx shim and an ld.so.preload that loads it (berth.worker.gvisor_statx)."""
        if self._statx is None:
            self._statx = asyncio.ensure_future(asyncio.to_thread(gvisor_statx.build, BUNDLE_ROOT / "gvisor-statx"))
        shim = await asyncio.shield(self._statx)
        if shim is None:
            return []
        preload = sandbox.bundle / "ld.so.preload"
        await asyncio.to_thread(gvisor_statx.write_preload, sandbox.rootfs, preload)
        return [Bind(str(shim), gvisor_statx.IN_CONTAINER), Bind(str(preload), gvisor_statx.PRELOAD)]

    def _prewarm_client(self) -> None:
        """Install the modal client for the host's Python series now, not on the first container start
        (where it took long enough for the autoscaler to start a second container for the same input)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        series = f"{sys.version_info.major}.{sys.version_info.minor}"
        task = loop.create_task(self._rootfs.ensure_client(series, lambda line: log.debug("%s", line.rstrip())))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def remove_orphans(self, task_root: Path) -> None:
        """After a crash (kill -9) of this server, its task directories still hold containers, overlay
        mounts, namespaces and cgroups. Nothing of a previous process is alive to use them: remove them."""
        if not task_root.is_dir():
            return
        for workdir in task_root.iterdir():
            task_id = workdir.name
            cid = f"berth-{task_id}"
            netns, veth = network.names_for(task_id)
            delete = self._command("delete", "--force", cid)
            if self.gvisor and (network.NETNS_DIR / netns).exists():  # where its control socket is
                delete = ["nsenter", f"--net={network.NETNS_DIR / netns}", *delete]
            subprocess.run(delete, capture_output=True)
            subprocess.run(["ip", "link", "del", veth], capture_output=True)
            subprocess.run(["ip", "netns", "del", netns], capture_output=True)
            views = VIEWS_ROOT / cid
            for point in [views / "merged", workdir / "merged", *userns.mounts_under(views)]:
                umount(point)
            for point in userns.mounts_under(workdir):
                umount(point)
            shutil.rmtree(views, ignore_errors=True)
            ContainerCgroup(cid).remove()
            shutil.rmtree(BUNDLE_ROOT / cid, ignore_errors=True)
            shutil.rmtree(workdir, ignore_errors=True)
            log.info("removed what was left of container %s", task_id)
        cluster_net.remove_idle_bridges()

    def _command(self, *args: str) -> list[str]:
        return [self.binary, "--root", self._state_root, *self._flags, *args]

    def _run_command(self, sandbox: Sandbox) -> list[str]:
        if self.gvisor and sandbox.net is None:  # runsc would run on the host's own network
            raise RuntimeUnavailable("runsc needs the container's network namespace")
        return self._control(sandbox, "run", "--bundle", str(sandbox.bundle), sandbox.container_id)

    def _control(self, sandbox: Sandbox, *args: str) -> list[str]:
        """A runtime command about one container. runsc's run and every later command for it share the
        container's network namespace, where its control socket (an abstract unix socket) is."""
        argv = self._command(*args)
        if self.gvisor and sandbox.net is not None:
            return ["nsenter", f"--net={sandbox.net.netns_path}", *argv]
        return argv

    async def start(self, spec: TaskSpec, workdir: Path, env: dict[str, str]) -> OciContainer:
        image = self._images(spec.image_id)
        key = await self._pool_key(spec)
        if key is not None:
            pooled = self._book(spec).take(key)
            self._fill_pool(key, spec, workdir)
            if pooled is not None:
                try:
                    if spec.sandbox is None:
                        return await self._hand_over_function(pooled, spec, env, image)
                    if self.gvisor:
                        return await self._hand_over_gvisor(pooled, spec, env, image)
                    return await self._hand_over(pooled, spec, env, image)
                except Exception:
                    log.exception("could not hand pooled container %s over; starting one", pooled.sandbox.container_id)
                    await self._discard(pooled)
        sandbox, proc = await self._launch(spec, workdir, env, image)
        return self._container(sandbox, spec.task_id, proc)

    async def _launch(
        self, spec: TaskSpec, workdir: Path, env: dict[str, str], image: ImageManifest, waiting: bool = False
    ) -> tuple[Sandbox, asyncio.subprocess.Process]:
        """Set up a container and `crun run` it. `waiting`: a pooled sandbox container, whose execd waits for
        the entrypoint (berth.worker.sandbox_pool)."""
        cid = f"berth-{spec.task_id}"
        sandbox = Sandbox(cid, BUNDLE_ROOT / cid, ContainerCgroup(cid), task_limits(spec))
        sandbox.cwd = (spec.sandbox.workdir if spec.sandbox else "") or image.workdir or "/root"
        sandbox.workdir = workdir
        # gVisor's own kernel already stands between a sandbox and the host; its user namespace support
        # (2022 build) is not what runsc's OCI path uses, so only crun/runc sandboxes get one.
        sandbox.userns = spec.sandbox is not None and not self.gvisor
        gpus = list(spec.gpus)
        self._sandboxes[spec.task_id] = sandbox
        try:
            binds = await self._prepare(spec, workdir, image, sandbox)
            binds += [Bind(lib, lib) for lib in (gpu.driver_libraries() if gpus else [])]
            binds += await self._statx_binds(sandbox) if self.gvisor else []
            helper = await self._execd_binary() if spec.sandbox is not None or waiting else None
            command = container_loop.command(spec, LOOP_PATH)
            if helper is not None:
                binds.append(Bind(str(helper), execd.IN_CONTAINER))
                command = [execd.IN_CONTAINER, "--wait"] if waiting else [execd.IN_CONTAINER, "--", *command]
            elif waiting and self.gvisor:  # a pooled runsc sandbox: its entrypoint comes on stdin
                reader = await self._execd_build()
                if reader is None:
                    raise RuntimeUnavailable("a pooled runsc container needs berth-execd")
                binds.append(Bind(str(reader), execd.IN_CONTAINER))
                command = [execd.IN_CONTAINER, "--stdin"]
            sandbox.env = {**self._env(spec, env, image), **(gpu.visible_devices_env(gpus) if gpus else {})}
            config = ContainerConfig(
                args=[*self._init(binds), *command],
                env=sandbox.env,
                rootfs=str(sandbox.rootfs),
                cwd=sandbox.cwd,
                hostname=spec.task_id,
                netns_path=sandbox.net.netns_path if sandbox.net else None,
                cgroups_path=sandbox.cgroup.container_path,
                cpu=sandbox.limits.cpu,
                pids_limit=sandbox_pids_limit(sandbox.limits.memory_mb) if spec.sandbox else PIDS_LIMIT,
                nofile=nofile_limit(),
                nproc=gvisor_nproc_limit(sandbox.limits.memory_mb) if self.gvisor and spec.sandbox else 0,
                binds=binds,
                devices=[device_entry(d) for d in gpu.container_devices(gpus)] if gpus else [],
                inherit_network=self.gvisor,
                seccomp=seccomp.profile(gvisor=self.gvisor),
                id_mappings=userns.oci_mappings() if sandbox.userns else None,
            )
            (sandbox.bundle / "config.json").write_text(json.dumps(build_config(config)))
            proc = await self._run(sandbox, spec, helper, waiting)
        except BaseException:
            self._sandboxes.pop(spec.task_id, None)
            await self._teardown(sandbox)
            raise
        return sandbox, proc

    def _container(
        self,
        sandbox: Sandbox,
        task_id: str,
        proc: asyncio.subprocess.Process,
        stdio: tuple[asyncio.StreamReader, asyncio.StreamReader, StdinWriter] | None = None,
    ) -> OciContainer:
        def on_exit(code: int) -> str | None:
            if code == OOM_EXIT and sandbox.cgroup.oom_killed():
                self.oom_killed.add(task_id)
                return (
                    f"\nberth: container {task_id} was OOM-killed: it exceeded its memory limit of "
                    f"{sandbox.limits.memory_mb} MiB\n"
                )
            return None

        def kill(signum: int) -> None:
            argv = self._control(sandbox, "kill", sandbox.container_id, str(signum))
            self._spawn(argv, lambda: proc.returncode is not None)

        return OciContainer(proc, on_exit, kill, stdio)

    # the warm pools (berth.worker.sandbox_pool)
    def _book(self, spec: TaskSpec) -> PoolBook[Pooled]:
        return self._pool if spec.sandbox is not None else self._function_pool

    async def _pool_key(self, spec: TaskSpec) -> PoolKey | None:
        book = self._book(spec)
        if book.settings.per_image <= 0:
            return None
        if self.gvisor and (spec.sandbox is None or not runsc_pool_enabled()):  # no function standby on runsc
            return None
        if spec.sandbox is None and not container_loop.enabled():  # the standby is Berth's loop
            return None
        if await self._execd_build() is None:
            return None
        limits = task_limits(spec)
        if spec.sandbox is None:
            return function_pool_key(spec, limits.memory_mb, limits.cpu)
        return pool_key(spec, limits.memory_mb, limits.cpu)

    def _fill_pool(self, key: PoolKey, template: TaskSpec, workdir: Path) -> None:
        book = self._book(template)
        for pooled in [*self._pool.drop_idle(), *self._function_pool.drop_idle()]:
            self._background_job(self._discard(pooled))
        if self._closing:
            return
        if key.snapshot_of in self._snapshot_failed:
            return
        if time.monotonic() - self._standby_failed.get(key, -STANDBY_BACKOFF_S) < STANDBY_BACKOFF_S:
            return
        want = 0
        if template.sandbox is None:  # a function's buffer_containers: that many ready, within the caps
            args = api_pb2.ContainerArguments.FromString(template.container_arguments)
            want = args.function_def.autoscaler_settings.buffer_containers
        while book.to_start(key, want):
            self._background_job(self._start_pooled(key, template, workdir.parent))

    def _background_job(self, job: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(job)
        self._pool_jobs.add(task)
        task.add_done_callback(self._pool_jobs.discard)

    async def _start_pooled(self, key: PoolKey, template: TaskSpec, task_root: Path) -> None:
        """One container like `template`'s, with nothing of the request in it (no command, environment,
        secrets, files or working directory: those come at hand-over). A function container's loop is started
        in standby and is ready once it has imported modal."""
        function = template.sandbox is None
        await asyncio.sleep(FUNCTION_REFILL_DELAY_S if function else REFILL_DELAY_S)
        if self._closing:
            self._book(template).started(key, None)
            return
        pool_id = f"pool-{secrets.token_hex(6)}"
        spec = self._pool_spec(key, template, pool_id)
        kind = "memory-snapshot" if key.snapshot_of else "function" if function else "sandbox"
        workdir = task_root / pool_id
        pooled: Pooled | None = None
        try:
            pooled = await self._launch_pooled(key, spec, workdir)
        except Exception:
            log.exception("could not start a pooled %s container", kind)
            if key.snapshot_of:
                self._snapshot_failed.add(key.snapshot_of)
            elif function:
                self._standby_failed[key] = time.monotonic()
            await asyncio.to_thread(shutil.rmtree, workdir, True)
        if (not self._book(template).started(key, pooled) or self._closing) and pooled is not None:
            await self._discard(pooled)
        elif pooled is not None:
            log.info("pooled %s container %s is ready (image %s)", kind, pool_id, key.image_id)
            watcher = asyncio.ensure_future(self._watch_pooled(pooled))
            self._watchers.add(watcher)
            watcher.add_done_callback(self._watchers.discard)

    async def _launch_pooled(self, key: PoolKey, spec: TaskSpec, workdir: Path) -> Pooled:
        """Start a pooled container (and a function container's standby loop); on any failure, or when the
        worker stops meanwhile, nothing of it stays behind."""
        image = self._images(spec.image_id)
        function = spec.sandbox is None
        workdir.mkdir(parents=True, exist_ok=True)
        if function:  # bind-mounted at start; the task's arguments are written into it at hand-over
            (workdir / "container_arguments.bin").write_bytes(spec.container_arguments)
        server = StandbyServer(workdir / "standby.sock") if key.snapshot_of else None
        if server is not None:
            await server.start()
        try:
            sandbox, proc = await self._launch(spec, workdir, {}, image, waiting=True)
        except BaseException:
            if server is not None:
                await server.close()
            raise
        pooled = Pooled(sandbox, proc, spec.task_id, server=server)
        try:
            if self.gvisor:  # its entrypoint will be a `runsc exec`: ready once the container runs
                await self._until_running(sandbox, POOLED_RUNSC_READY_S)
            if server is not None:
                pooled.standby = await self._snapshot_standby(sandbox, spec, image, server)
            elif function:
                pooled.standby = await self._standby(sandbox, spec, image)
        except BaseException:
            await self._discard(pooled)
            raise
        return pooled

    @staticmethod
    def _pool_spec(key: PoolKey, template: TaskSpec, pool_id: str) -> TaskSpec:
        """What a pooled container is started with: `template` without the request's own parts."""
        if template.sandbox is not None:
            sandbox = replace(template.sandbox, sandbox_id="", entrypoint=(), workdir="", readiness_probe=None)
            return replace(template, task_id=pool_id, env={}, sandbox=sandbox)
        if not key.snapshot_of:
            return replace(template, task_id=pool_id, env={}, files=[], container_arguments=b"", secret="")
        # a memory-snapshot standby: the function's own files, arguments and environment, and no task's identity
        args = api_pb2.ContainerArguments.FromString(template.container_arguments)
        args.task_id, args.checkpoint_id = pool_id, f"ck-{pool_id}"
        args.function_def.is_checkpointing_function = True  # as Modal's server marks a snapshotting task's
        return replace(template, task_id=pool_id, container_arguments=args.SerializeToString(), secret="")

    async def _standby(self, sandbox: Sandbox, spec: TaskSpec, image: ImageManifest) -> HelperProcess:
        """Start a pooled function container's loop in standby (berth_loop --standby) and wait until it has
        imported modal. Its environment is the image's and the container's own, with nothing of a task."""
        helper = sandbox.helper
        if helper is None:
            raise RuntimeUnavailable("a pooled function container needs berth-execd")
        sandbox.env = self._env(spec, {"PYTHONUNBUFFERED": "1"}, image)
        argv = [*container_loop.command(spec, LOOP_PATH), berth_loop.STANDBY_FLAG]
        standby = await helper.start_main(argv, sandbox.env, sandbox.cwd)
        assert standby.stdout is not None
        ready = await asyncio.wait_for(standby.stdout.readline(), STANDBY_READY_S)
        if ready != berth_loop.STANDBY_READY:
            err = await standby.stderr.read(4096) if standby.stderr is not None else b""
            raise RuntimeUnavailable(f"the standby loop did not start: {(ready + err).decode(errors='replace')}")
        return standby

    async def _snapshot_standby(
        self, sandbox: Sandbox, spec: TaskSpec, image: ImageManifest, server: StandbyServer
    ) -> HelperProcess:
        """Start modal's entrypoint in a memory-snapshot standby (berth.worker.standby) and wait until it has
        run the function's snap=True enter hooks and asked for its checkpoint."""
        helper = sandbox.helper
        if helper is None:
            raise RuntimeUnavailable("a pooled function container needs berth-execd")
        given = {
            "PYTHONUNBUFFERED": "1",
            "MODAL_SERVER_URL": STANDBY_URL,
            "MODAL_IS_REMOTE": "1",
            "MODAL_TASK_ID": spec.task_id,
            "MODAL_ENABLE_SNAP_RESTORE": "1",
        }
        sandbox.env = self._env(spec, given, image)
        argv = [*container_loop.command(spec, LOOP_PATH), berth_loop.SNAPSHOT_STANDBY_FLAG]
        process = await helper.start_main(argv, sandbox.env, sandbox.cwd)
        checkpointed = asyncio.ensure_future(server.checkpointed.wait())
        exited = asyncio.ensure_future(process.wait())
        try:
            await asyncio.wait({checkpointed, exited}, timeout=SNAPSHOT_READY_S, return_when=asyncio.FIRST_COMPLETED)
        finally:
            exited.cancel()
            checkpointed.cancel()
        if not server.checkpointed.is_set():
            err = await process.stderr.read(8192) if process.stderr is not None and process.returncode else b""
            raise RuntimeUnavailable(
                f"the memory-snapshot standby did not reach its checkpoint: {err.decode(errors='replace')}"
            )
        return process

    async def _watch_pooled(self, pooled: Pooled) -> None:
        """A pooled container that ends before anyone takes it leaves the pool. While it waits, pools whose image
        (or function) has not been used for their idle time are emptied even when nothing else starts."""
        every = max(IDLE_SWEEP_MIN_S, min(self._pool.settings.idle_s, self._function_pool.settings.idle_s) / 2)
        ended = asyncio.ensure_future(pooled.proc.wait())
        while not pooled.taken:
            done, _ = await asyncio.wait({ended}, timeout=every)
            if done:
                break
            for idle in [*self._pool.drop_idle(), *self._function_pool.drop_idle()]:
                self._background_job(self._discard(idle))
        ended.cancel()
        if not pooled.taken:
            self._pool.remove(pooled)
            self._function_pool.remove(pooled)
            await self._discard(pooled)

    async def _discard(self, pooled: Pooled) -> None:
        """Tear a pooled container down, to the end even when the job that asked is cancelled (the worker
        stopping cancels its pool's jobs): one torn down halfway left its mounts and loop disk behind."""
        pooled.taken = True
        if pooled.teardown is None:
            pooled.teardown = asyncio.ensure_future(self._tear_down_pooled(pooled))
            self._teardowns.add(pooled.teardown)
            pooled.teardown.add_done_callback(self._teardowns.discard)
        await asyncio.shield(pooled.teardown)

    async def _tear_down_pooled(self, pooled: Pooled) -> None:
        if pooled.server is not None:
            await pooled.server.close()
        self._sandboxes.pop(pooled.pool_id, None)
        await self._teardown(pooled.sandbox)
        for point in await asyncio.to_thread(userns.mounts_under, pooled.sandbox.workdir):
            await asyncio.to_thread(umount, point)
        await asyncio.to_thread(shutil.rmtree, pooled.sandbox.workdir, True)

    def _adopt(self, pooled: Pooled, spec: TaskSpec, env: dict[str, str], image: ImageManifest, kind: str) -> Sandbox:
        """A pooled container becomes the task's: taken from the pool, known by the task's id, with its env."""
        log.info("%s %s starts in pooled container %s", kind, spec.task_id, pooled.pool_id)
        pooled.taken = True
        sandbox = pooled.sandbox
        self._sandboxes.pop(pooled.pool_id, None)
        self._sandboxes[spec.task_id] = sandbox
        sandbox.env = self._env(spec, env, image)
        return sandbox

    @staticmethod
    def _bundle_process(sandbox: Sandbox) -> None:
        """The bundle's process gets the task's environment and working directory: `<runtime> exec` starts
        from it, so later execs run as the task's, not as the pooled container's."""
        config = json.loads((sandbox.bundle / "config.json").read_text())
        config["process"].update(env=[f"{k}={v}" for k, v in sandbox.env.items()], cwd=sandbox.cwd)
        (sandbox.bundle / "config.json").write_text(json.dumps(config))

    async def _hand_over(
        self, pooled: Pooled, spec: TaskSpec, env: dict[str, str], image: ImageManifest
    ) -> OciContainer:
        """Make a pooled container this sandbox's: its name, environment and working directory, and its
        entrypoint started by execd with pipes for its stdio."""
        helper = pooled.sandbox.helper
        assert spec.sandbox is not None and helper is not None
        sandbox = self._adopt(pooled, spec, env, image, "sandbox")
        sandbox.cwd = spec.sandbox.workdir or image.workdir or "/root"
        write_hosts(sandbox.rootfs, spec.task_id)
        if sandbox.userns:
            os.chown(sandbox.rootfs / "etc" / "hosts", userns.HOST_BASE, userns.HOST_BASE)
        await asyncio.to_thread(set_hostname, container_init_pid(pooled.proc.pid), spec.task_id)
        self._bundle_process(sandbox)  # `crun exec` (the fallback) starts from it
        entry = await helper.start_main(list(spec.command), sandbox.env, sandbox.cwd)
        assert entry.stdout is not None and entry.stderr is not None and entry.stdin is not None
        return self._container(sandbox, spec.task_id, pooled.proc, (entry.stdout, entry.stderr, entry.stdin))

    async def _hand_over_gvisor(
        self, pooled: Pooled, spec: TaskSpec, env: dict[str, str], image: ImageManifest
    ) -> OciContainer:
        """Make a pooled runsc container this sandbox's. runsc (2022) passes no fd in, so its init is
        `execd --stdin`, whose stdio is `runsc run`'s as in a fresh sandbox: the worker writes it the
        entrypoint, environment and working directory (execd.entrypoint_message), and it execs the entrypoint
        in its own place, keeping the seccomp filter, capabilities and limits `runsc run` gave it. The
        hostname stays the pooled container's own (a fresh `pool-...` name, nothing of another sandbox): no
        process in it may set it, and gVisor's UTS namespace is not the host's to enter; /etc/hosts names
        both."""
        assert spec.sandbox is not None and pooled.proc.stdin is not None
        sandbox = self._adopt(pooled, spec, env, image, "sandbox")
        sandbox.cwd = spec.sandbox.workdir or image.workdir or "/root"
        write_hosts(sandbox.rootfs, spec.task_id, pooled.pool_id)
        self._bundle_process(sandbox)  # `runsc exec` starts from it
        pooled.proc.stdin.write(execd.entrypoint_message(list(spec.command), sandbox.env, sandbox.cwd))
        await pooled.proc.stdin.drain()
        return self._container(sandbox, spec.task_id, pooled.proc)

    async def _hand_over_function(
        self, pooled: Pooled, spec: TaskSpec, env: dict[str, str], image: ImageManifest
    ) -> OciContainer:
        """Make a pooled function container this task's: its files, container arguments, name and hosts file
        first, then its loop is sent the task's whole environment (its identity and secrets) and working
        directory, and runs modal's entrypoint from there."""
        standby = pooled.standby
        assert standby is not None and standby.stdin is not None
        assert standby.stdout is not None and standby.stderr is not None
        sandbox = self._adopt(pooled, spec, env, image, "function task")
        if pooled.server is None:  # a memory-snapshot standby has the function's files already
            await asyncio.to_thread(place_files, spec.files, sandbox.rootfs, self._files)
        # in place: the file is bind-mounted, a new inode would not be seen inside
        (sandbox.workdir / "container_arguments.bin").write_bytes(spec.container_arguments)
        write_hosts(sandbox.rootfs, spec.task_id)
        init = container_init_pid(pooled.proc.pid)
        await asyncio.to_thread(set_hostname, init, spec.task_id)
        await asyncio.to_thread(reset_priority, init)
        self._bundle_process(sandbox)
        if pooled.server is not None:  # modal's restore: the task's ids (its environment comes on stdin)
            await pooled.server.close()
            state = {"task_id": spec.task_id, "function_id": spec.function_id}
            restore = sandbox.rootfs / RESTORE_STATE
            partial = restore.with_suffix(".partial")
            partial.write_text(json.dumps(state))
            partial.replace(restore)
        standby.stdin.write(json.dumps({"env": sandbox.env, "cwd": sandbox.cwd}).encode() + b"\n")
        await standby.stdin.drain()
        standby.stdin.close()
        return self._container(sandbox, spec.task_id, pooled.proc, (standby.stdout, standby.stderr, standby.stdin))

    async def close(self) -> None:
        """The worker is stopping: the pooled containers go (running ones are stopped by the worker). Those still
        starting finish first (and go), so none becomes ready after the pool was emptied and outlives the worker;
        cancelled halfway, a start could leave behind a mount that a thread made after the cancellation."""
        self._closing = True
        for watcher in list(self._watchers):
            watcher.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        if self._pool_jobs:
            _, late = await asyncio.wait(set(self._pool_jobs), timeout=POOL_CLOSE_WAIT_S)
            for job in late:
                job.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        for pooled in [*self._pool.drop_all(), *self._function_pool.drop_all()]:
            await self._discard(pooled)
        await asyncio.gather(*self._teardowns, return_exceptions=True)

    async def _run(
        self, sandbox: Sandbox, spec: TaskSpec, helper: Path | None, waiting: bool
    ) -> asyncio.subprocess.Process:
        """`crun run`; with the helper, the container's end of execd's socket goes in as fd 3. A waiting
        (pooled) container's entrypoint gets its stdio from execd at hand-over, not from crun."""
        argv = self._run_command(sandbox)
        # a pooled runsc container's stdio is its entrypoint's, as a fresh one's (its entrypoint comes on stdin)
        pipe = asyncio.subprocess.DEVNULL if waiting and not self.gvisor else asyncio.subprocess.PIPE
        stdio: dict[str, Any] = {
            "stdin": pipe if spec.sandbox else asyncio.subprocess.DEVNULL,
            "stdout": pipe,
            "stderr": pipe,
            "start_new_session": True,
        }
        if helper is None:
            return await asyncio.create_subprocess_exec(*argv, **stdio)
        ours, theirs = execd.socket_pair()
        try:
            # execd --fd3 moves the container's end to fd 3, where `--preserve-fds 1` takes it from
            at = argv.index("run") + 1
            proc = await asyncio.create_subprocess_exec(
                str(helper),
                "--fd3",
                str(theirs.fileno()),
                *argv[:at],
                "--preserve-fds",
                "1",
                *argv[at:],
                **stdio,
                pass_fds=(theirs.fileno(),),
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        sandbox.helper = ExecHelper(ours)
        return proc

    def _spawn(self, argv: list[str], gone: Callable[[], bool]) -> None:
        """Run a `crun kill` until it is delivered: right after `crun run` starts, the container may not
        exist yet, and a kill that found nothing would be lost (a terminate would then wait forever)."""

        async def run() -> None:
            for _ in range(200):
                proc = await asyncio.create_subprocess_exec(
                    *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
                )
                if await proc.wait() == 0 or gone():
                    return
                await asyncio.sleep(0.05)
            log.warning("could not deliver %s", " ".join(argv[-3:]))

        task = asyncio.ensure_future(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _prepare(self, spec: TaskSpec, workdir: Path, image: ImageManifest, sandbox: Sandbox) -> list[Bind]:
        # The network namespace is made while the root is mounted: they are independent, and each is a few
        # ms of subprocesses.
        net = asyncio.ensure_future(self._network(spec))
        try:
            pkg, deps = await self._prepare_root(spec, workdir, image, sandbox)
        finally:
            sandbox.net = await net  # (torn down with the rest if anything failed)
        merged = sandbox.rootfs
        await self._links(spec, sandbox, merged)
        binds = standard_binds(self._ca_bundle)
        binds += [Bind(str(pkg), "/pkg"), Bind(str(deps), "/__modal/deps")]
        if spec.sandbox is None:
            binds.append(Bind(str(workdir / "container_arguments.bin"), f"{INNER}/container_arguments.bin"))
            if (workdir / "standby.sock").exists():  # a memory-snapshot standby's (berth.worker.standby)
                binds.append(Bind(str(workdir / "standby.sock"), STANDBY_SOCKET))
            if container_loop.enabled():
                binds.append(Bind(str(_published(berth_loop.__file__, "berth-loop.py")), LOOP_PATH, readonly=True))
        else:  # the helper the client's Sandbox.filesystem API execs
            binds.append(Bind(str(fs_tools_file()), FS_TOOLS_PATH, readonly=True))
        for i, b in enumerate(spec.binds):  # volumes
            b.host_path.mkdir(parents=True, exist_ok=True)
            source = str(b.host_path)
            if sandbox.userns:  # on disk, the sandbox's root owns files as uid 0 (see berth.worker.userns)
                view = sandbox.views / "volumes" / str(i)
                await asyncio.to_thread(self._idmapper.bind, source, view)
                sandbox.mounted.append(view)
                source = str(view)
            binds.append(Bind(source, b.container_path, readonly=b.read_only))
        for i, bucket in enumerate(spec.buckets):  # FUSE takes no idmapped view: s3fs gives files their owner
            owner = userns.HOST_BASE if sandbox.userns else 0
            mounted = await buckets.mount(bucket, workdir / "buckets" / str(i), owner)
            sandbox.buckets.append(mounted)
            binds.append(Bind(str(mounted.path), bucket.mount_path, readonly=bucket.read_only))
        return binds

    async def _network(self, spec: TaskSpec) -> network.ContainerNet | None:
        """Its namespace, with a proxy's source address."""
        if not (spec.sandbox and spec.sandbox.block_network):  # blocked: a namespace with only lo
            return await network.setup(spec.task_id, spec.source_ip)
        if self.gvisor:  # crun makes that namespace itself; runsc runs in the one it is started in
            return await network.setup_loopback(spec.task_id)
        return None

    async def _links(self, spec: TaskSpec, sandbox: Sandbox, merged: Path) -> None:
        """A cluster's private link, and a sandbox's egress filter, once its namespace and root are there."""
        if spec.cluster is not None:
            if sandbox.net is None:
                raise RuntimeUnavailable("a clustered function's container needs a network")
            sandbox.cluster = await cluster_net.join(spec.cluster, spec.task_id, sandbox.net.netns)
            with open(merged / "etc" / "hosts", "a") as hosts:
                hosts.write(cluster_net.hosts_line(sandbox.cluster))
        if spec.sandbox is not None and spec.sandbox.egress is not None and sandbox.net is not None:
            await egress.restrict(spec.sandbox.egress, sandbox.net.netns_path, merged / "etc" / "hosts")

    async def _prepare_root(
        self, spec: TaskSpec, workdir: Path, image: ImageManifest, sandbox: Sandbox
    ) -> tuple[Path, Path]:
        """The container's root (its overlay, on a sandbox's own disk), its files and its cgroup; returns
        where the modal client's package and dependencies are."""
        sandbox.bundle.mkdir(parents=True, exist_ok=True)
        merged = sandbox.rootfs = (sandbox.views if sandbox.userns else workdir) / "merged"
        lower = image.lower_dirs()
        layer = workdir
        if spec.sandbox is not None:  # its writable layer on a disk of its own, capped
            layer = workdir / "disk"
            await self._disks.mount(workdir / "disk.img", layer)
            sandbox.mounted.append(layer)
        if sandbox.userns:
            VIEWS_ROOT.mkdir(mode=0o711, parents=True, exist_ok=True)
            os.chmod(VIEWS_ROOT, 0o711)
            lower = await asyncio.to_thread(self._idmapped_layers, lower, layer / "upper", sandbox)
        sandbox.upper = layer / "upper"
        await asyncio.to_thread(mount_overlay, lower, sandbox.upper, layer / "work", merged)
        sandbox.mounted.insert(0, merged)  # before the layers under it
        (merged / "root").mkdir(exist_ok=True)
        write_hosts(merged, spec.task_id)
        if sandbox.userns:  # the sandbox's root may edit its own /etc/hosts
            os.chown(merged / "etc" / "hosts", userns.HOST_BASE, userns.HOST_BASE)
        await asyncio.to_thread(place_files, spec.files, merged, self._files)
        pkg, deps = await self._rootfs.ensure_client(
            image.python_series or "3.11", lambda line: log.debug("%s", line.rstrip())
        )
        sandbox.cgroup.create(sandbox.limits.memory_mb)
        return pkg, deps

    def _idmapped_layers(self, lower: list[str], upper: Path, sandbox: Sandbox) -> list[str]:
        """Idmapped views of the image's layers for the overlay, and an upper dir owned by the sandbox's
        root, so that files owned by host uid n are uid n inside and copy-ups keep their owner."""
        views = []
        for i, layer in enumerate(lower):
            view = sandbox.views / "layers" / str(i)
            self._idmapper.bind(layer, view, readonly=True)
            sandbox.mounted.append(view)
            views.append(str(view))
        upper.mkdir(parents=True, exist_ok=True)
        os.chown(upper, userns.HOST_BASE, userns.HOST_BASE)
        return views

    @staticmethod
    def _init(binds: list[Bind]) -> list[str]:
        """tini as pid 1 where installed, so SIGTERM reaches the entrypoint and zombies are reaped."""
        if Path(TINI).exists():
            binds.append(Bind(TINI, f"{INNER}/init"))
            return [f"{INNER}/init", "-s", "--"]
        return []

    def _env(self, spec: TaskSpec, given: dict[str, str], image: ImageManifest) -> dict[str, str]:
        env = dict(image.env)
        env.update({k: v for k, v in given.items() if k not in _HOST_ONLY and k not in spec.env})
        env.update(spec.env)
        env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        if spec.sandbox is not None:  # a sandbox runs its image as it is: no modal entrypoint to set up
            env.update({"HOME": "/root", "SSL_CERT_FILE": CA_PATH, "REQUESTS_CA_BUNDLE": CA_PATH})
            env.update({"PIP_CONFIG_FILE": "/dev/null", "MODAL_SANDBOX_ID": spec.sandbox.sandbox_id})
            return env
        py_path = env.get("PYTHONPATH")
        env.update(
            {
                "HOME": "/root",
                # /root holds the app's automounted source, importable whatever the image's WORKDIR is.
                "PYTHONPATH": f"/root:/pkg:{py_path}" if py_path else "/root:/pkg",
                "MODAL_CONTAINER_ARGUMENTS_PATH": f"{INNER}/container_arguments.bin",
                "MODAL_CONFIG_PATH": f"{INNER}/modal.toml",
                "MODAL_IMAGE_ID": spec.image_id,
                "SSL_CERT_FILE": CA_PATH,
                "REQUESTS_CA_BUNDLE": CA_PATH,
                "PIP_CONFIG_FILE": "/dev/null",
            }
        )
        return env

    async def exec(
        self,
        spec: TaskSpec,
        workdir: Path,
        argv: list[str],
        env: dict[str, str],
        cwd: str | None,
        tty: Pty | None = None,
    ) -> tuple[RunningCommand, Callable[[int], None]]:
        """Run a command in the running container's namespaces and cgroup; it starts from the container's
        own environment, with `env` on top. A sandbox's berth-execd forks it there (berth.worker.execd);
        otherwise (function containers, runsc, no helper) it is a `crun exec`. With a tty, the terminal is
        allocated inside the container (so it is the command's controlling terminal there, and `tty` names
        it): by execd, or by crun, which hands its master over the console socket. runsc (2022) hands a
        console only to a detached exec, but takes the stdio of one it waits for as the command's terminal
        when process.terminal is set: there the worker's own pty slave is that stdio."""
        sandbox = self._sandboxes.get(spec.task_id)
        if sandbox is None:
            raise RuntimeUnavailable(f"container {spec.task_id} is not running")
        if sandbox.helper is not None:
            started = await self._helper_exec(sandbox, sandbox.helper, argv, env, cwd, tty)
            if started is not None:
                return started
        await self._until_running(sandbox)
        name = f"exec-{secrets.token_hex(8)}"
        pid_file = sandbox.bundle / f"{name}.pid"
        # The container's own process (user, capabilities, limits, environment) with this command: written
        # to the bundle's tmpfs, so secret values never appear on a command line.
        config = json.loads((sandbox.bundle / "config.json").read_text())
        process = dict(config["process"])
        base = dict(item.split("=", 1) for item in process.get("env", []))
        process.update(args=list(argv), cwd=cwd or sandbox.cwd, env=[f"{k}={v}" for k, v in {**base, **env}.items()])
        process["terminal"] = tty is not None
        if tty is not None:
            process["consoleSize"] = {"height": tty.rows, "width": tty.cols}
        process_file = sandbox.bundle / f"{name}.json"
        fd = os.open(process_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(process, f)
        # runsc: --pid-file would name the `runsc exec` process on the host, which forwards signals but dies
        # of SIGKILL alone; the pid inside gVisor (--internal-pid-file) is signalled with `runsc kill --pid`.
        pid_flag = "--internal-pid-file" if self.gvisor else "--pid-file"
        args = ["exec", pid_flag, str(pid_file), "--process", str(process_file)]
        if tty is None or self.gvisor:
            command = self._control(sandbox, *args, sandbox.container_id)
            proc = await asyncio.create_subprocess_exec(*command, **exec_stdio(tty.slave if tty else None))
        else:
            proc = await self._exec_with_terminal(args, sandbox, sandbox.bundle / f"{name}.sock", tty)
        if self.gvisor:
            return proc, self._gvisor_killer(sandbox, pid_file, proc)
        return proc, kill_pid_file(str(pid_file), proc)

    async def _helper_exec(
        self,
        sandbox: Sandbox,
        helper: ExecHelper,
        argv: list[str],
        env: dict[str, str],
        cwd: str | None,
        tty: Pty | None,
    ) -> tuple[RunningCommand, Callable[[int], None]] | None:
        """The exec through the container's execd; None where it can't take it (the caller falls back to
        `crun exec`): a request larger than one message, or an execd that is gone."""
        full_env = {**sandbox.env, **env}
        where = cwd or sandbox.cwd
        if not helper.fits(argv, full_env, where):
            log.info(
                "an exec in %s does not fit execd's message: it goes through %s exec", sandbox.container_id, self.name
            )
            return None
        try:
            proc, master = await helper.start(argv, full_env, where, (tty.rows, tty.cols) if tty is not None else None)
        except HelperGone as exc:
            log.warning("%s in %s: execs go through %s exec from now on", exc, sandbox.container_id, self.name)
            sandbox.helper = None
            return None
        if tty is not None and master is not None:
            tty.adopt(master)
        return proc, proc.send_signal

    def _gvisor_killer(
        self, sandbox: Sandbox, pid_file: Path, proc: asyncio.subprocess.Process
    ) -> Callable[[int], None]:
        """Signals an exec inside gVisor by its pid there (`runsc kill --pid`); before runsc has written
        that pid, the `runsc exec` process itself, which forwards what it can (not SIGKILL)."""

        def kill(signum: int) -> None:
            try:
                pid = int(pid_file.read_text().strip())
            except (OSError, ValueError):
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signum)
                return
            argv = self._control(sandbox, "kill", "--pid", str(pid), sandbox.container_id, str(signum))
            self._spawn(argv, lambda: proc.returncode is not None)

        return kill

    async def _exec_with_terminal(
        self, args: list[str], sandbox: Sandbox, socket_path: Path, tty: Pty
    ) -> asyncio.subprocess.Process:
        """`crun exec --console-socket`: crun sends the terminal's master fd over the socket; the worker's
        own pty is swapped for it. crun's own errors go to the worker's pty, which the client then never
        sees, so they are logged here."""
        console = ConsoleSocket(socket_path)
        try:
            proc = await asyncio.create_subprocess_exec(
                *self._control(sandbox, *args, "--console-socket", str(socket_path), sandbox.container_id),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
            master = await console.receive(proc)
        finally:
            console.close()
        if master is None:  # crun failed before it made the terminal: its message and code are the exec's
            err = (await proc.stderr.read()).decode(errors="replace") if proc.stderr else ""
            log.warning("crun exec with a terminal failed in %s: %s", sandbox.container_id, err.strip())
            if "not found" in err:
                raise FileNotFoundError(err.strip())
            raise RuntimeUnavailable(f"could not start a terminal in the container: {err.strip()}")
        tty.adopt(master)
        return proc

    async def _until_running(self, sandbox: Sandbox, timeout_s: float = 10.0) -> None:
        """`crun run` returns before the container's process runs; an exec needs it running."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            proc = await asyncio.create_subprocess_exec(
                *self._control(sandbox, "state", sandbox.container_id),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
            )
            out, _ = await proc.communicate()
            status = json.loads(out).get("status") if proc.returncode == 0 and out else None
            if status == "running":
                return
            if status not in (None, "created", "creating") or asyncio.get_running_loop().time() > deadline:
                raise RuntimeUnavailable(f"container {sandbox.container_id} is not running ({status or 'gone'})")
            await asyncio.sleep(0.02)

    async def netns_path(self, task_id: str) -> str | None:
        sandbox = self._sandboxes.get(task_id)
        if sandbox is None:
            raise RuntimeUnavailable(f"container {task_id} is not running")
        if sandbox.net is not None:
            return sandbox.net.netns_path
        # block_network: crun made the container a namespace of its own (only lo); its init is in it
        proc = await asyncio.create_subprocess_exec(
            *self._control(sandbox, "state", sandbox.container_id),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        out, _ = await proc.communicate()
        pid = json.loads(out).get("pid") if proc.returncode == 0 and out else None
        if not pid:
            raise RuntimeUnavailable(f"container {sandbox.container_id} is not running")
        return f"/proc/{pid}/ns/net"

    def changes(self, task_id: str) -> tuple[Path, int] | None:
        sandbox = self._sandboxes.get(task_id)
        if sandbox is None or sandbox.upper == Path():
            return None
        return sandbox.upper, userns.HOST_BASE if sandbox.userns else 0

    def usage(self, task_id: str) -> tuple[float, int] | None:
        sandbox = self._sandboxes.get(task_id)
        return sandbox.cgroup.usage() if sandbox is not None else None

    def address(self, task_id: str) -> str | None:
        sandbox = self._sandboxes.get(task_id)
        if sandbox is None or sandbox.net is None or not sandbox.net.address:  # none, or only loopback
            return None
        return sandbox.net.address

    @staticmethod
    def exec_exit_code(code: int, stderr_head: bytes) -> int:
        """crun exits 255 (runsc 128) for a command it cannot find; a shell (and the client) expects 127.
        runsc also exits 128 when the sandbox ends under a running exec (its wait loses the sandbox): the
        command was killed with it, which is what crun's exec reports then (SIGKILL, 137)."""
        if code == 255 and b"executable file" in stderr_head and b"not found" in stderr_head:
            return COMMAND_NOT_FOUND
        if code == 128 and b"error finding executable" in stderr_head:
            return COMMAND_NOT_FOUND
        if code == 128 and RUNSC_SANDBOX_GONE in stderr_head:
            return 128 + signal.SIGKILL
        return code

    async def cleanup(self, spec: TaskSpec, workdir: Path) -> None:
        sandbox = self._sandboxes.pop(spec.task_id, None)
        if sandbox is not None:
            await self._teardown(sandbox)
            if sandbox.workdir not in (Path(), workdir):  # a pooled container's own directory
                for point in await asyncio.to_thread(userns.mounts_under, sandbox.workdir):
                    await asyncio.to_thread(umount, point)
                await asyncio.to_thread(shutil.rmtree, sandbox.workdir, True)
        for point in await asyncio.to_thread(userns.mounts_under, workdir):  # never rmtree into a view
            await asyncio.to_thread(umount, point)
        await asyncio.to_thread(shutil.rmtree, workdir, True)

    async def _teardown(self, sandbox: Sandbox) -> None:
        if sandbox.helper is not None:
            sandbox.helper.close()
        proc = await asyncio.create_subprocess_exec(
            *self._control(sandbox, "delete", "--force", sandbox.container_id),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await proc.wait()
        for bucket in sandbox.buckets:
            await buckets.unmount(bucket)
        if sandbox.cluster is not None:
            await cluster_net.leave(sandbox.cluster)
        if sandbox.net is not None:
            await network.teardown(sandbox.net)
        for path in sandbox.mounted:
            await asyncio.to_thread(umount, path)
        if sandbox.userns:
            for point in await asyncio.to_thread(userns.mounts_under, sandbox.views):  # never rmtree into a view
                await asyncio.to_thread(umount, point)
            await asyncio.to_thread(shutil.rmtree, sandbox.views, True)
        await asyncio.to_thread(sandbox.cgroup.remove)
        await asyncio.to_thread(shutil.rmtree, sandbox.bundle, True)
