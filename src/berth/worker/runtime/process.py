"""Process runtime (developer option, NO isolation): the container entrypoint runs as a plain
subprocess of the worker, on the worker's own Python, with mounts laid out under the task directory."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from berth.domain.spec import BindMount, TaskSpec
from berth.errors import InvalidArgument
from berth.worker import berth_loop, container_loop, fs_tools
from berth.worker.execs import FS_TOOLS_PATH, exec_stdio
from berth.worker.files import FileSource
from berth.worker.pty import Pty
from berth.worker.usage import SessionCpu


class _ProcessContainer:
    def __init__(self, proc: asyncio.subprocess.Process, on_poll: Callable[[], None] = lambda: None) -> None:
        self._proc = proc
        self._on_poll = on_poll  # while it runs, every poll (metering reads the entrypoint's CPU counter)
        assert proc.stdout is not None and proc.stderr is not None
        self.stdout: asyncio.StreamReader = proc.stdout
        self.stderr: asyncio.StreamReader = proc.stderr
        self.stdin = proc.stdin

    async def wait(self) -> int:
        # Process.wait() also waits for the output pipes to close, which a leftover child can hold
        # open forever; the return code is known as soon as the entrypoint itself has exited.
        waiter = asyncio.ensure_future(self._proc.wait())
        while not waiter.done() and self._proc.returncode is None:
            self._on_poll()
            await asyncio.wait({waiter}, timeout=0.2)
        code = self._proc.returncode
        assert code is not None
        return code

    def signal(self, signum: int) -> None:
        if self._proc.returncode is None:
            try:
                os.killpg(self._proc.pid, signum)
            except ProcessLookupError:
                pass

    def exited(self) -> None:
        # Children the entrypoint started (a web_server's process, say) would outlive it, holding ports
        # and the output pipes: the container's session is one process group, end all of it.
        try:
            os.killpg(self._proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def host_path(workdir: Path, remote_path: str) -> Path:
    """Where a container path lives on the host: /root/... is the task's cwd, the rest sits under fs/."""
    parts = Path(remote_path).parts
    if ".." in parts:
        raise ValueError(f"Refusing mount path with '..': {remote_path}")
    if parts[:2] == ("/", "root"):
        return workdir / "root" / Path(*parts[2:]) if len(parts) > 2 else workdir / "root"
    return workdir / "fs" / Path(*parts[1:])


def link_bind(workdir: Path, bind: BindMount) -> None:
    """Without a mount namespace, a volume can only appear under /root (the task's cwd): as a symlink to
    its host directory. Read-only is not enforced here; the OCI runtime bind-mounts it read-only."""
    parts = Path(bind.container_path).parts
    if parts[:2] != ("/", "root") or len(parts) < 3 or ".." in parts:
        raise ValueError(
            f"The process runtime can only mount volumes under /root, not at {bind.container_path}: it has no"
            " mount namespace. Mount the volume at a path such as /root/vol, or use an OCI runtime."
        )
    link = workdir / "root" / Path(*parts[2:])
    if os.path.lexists(link):
        raise ValueError(f"Volume mount path {bind.container_path} collides with a file of the container")
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(bind.host_path, link, target_is_directory=True)


def _task_paths(workdir: Path, command: str) -> str:
    """The filesystem API's paths, as the task sees them (/root is its directory, the rest under fs/): without
    a mount namespace, a sandbox's /tmp would otherwise be the host's."""
    try:
        op = json.loads(command)
        (args,) = op.values()
        path = str(args["path"])
    except (ValueError, TypeError, KeyError, AttributeError):
        return command  # the tool reports a malformed command itself
    args["path"] = str(host_path(workdir, path))  # ValueError for a path with "..": refused
    return json.dumps(op)


class ProcessRuntime:
    name = "process"
    isolated = False

    def __init__(self, files: FileSource) -> None:
        self._files = files
        self._envs: dict[str, dict[str, str]] = {}
        self._sessions: dict[str, SessionCpu] = {}  # task → its container's CPU counter (metering)

    async def start(self, spec: TaskSpec, workdir: Path, env: dict[str, str]) -> _ProcessContainer:
        if spec.sandbox is not None and spec.sandbox.egress is not None:
            raise InvalidArgument(
                "outbound_cidr_allowlist / outbound_domain_allowlist need an OCI runtime (crun, runc or runsc): "
                "the process runtime runs sandboxes on the host's own network"
            )
        if spec.source_ip:
            raise InvalidArgument(
                "Proxies (proxy=modal.Proxy.from_name(...)) need an OCI runtime (crun, runc or runsc): the process "
                "runtime runs containers on the host's own network"
            )
        if spec.buckets:
            raise InvalidArgument(
                "CloudBucketMount needs an OCI runtime (crun, runc or runsc): the process runtime does not mount "
                "filesystems for its containers"
            )
        if spec.cluster is not None:
            raise InvalidArgument(
                "Clustered functions (@modal.clustered) need an OCI runtime (crun, runc or runsc): the process "
                "runtime has no private network to link a cluster's containers on"
            )
        root = workdir / "root"
        root.mkdir(parents=True, exist_ok=True)
        for f in spec.files:
            dest = host_path(workdir, f.remote_path)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self._files.path(f.sha256), dest)
            os.chmod(dest, f.mode & 0o7777 or 0o644)
        try:
            for bind in spec.binds:
                link_bind(workdir, bind)
        except ValueError:
            await self.cleanup(spec, workdir)
            raise
        argv = container_loop.command(spec, berth_loop.__file__)
        if spec.sandbox is None:
            argv[0] = sys.executable
        cwd = host_path(workdir, spec.sandbox.workdir) if spec.sandbox and spec.sandbox.workdir else root
        cwd.mkdir(parents=True, exist_ok=True)
        self._envs[spec.task_id] = env
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=str(cwd),
            env=env,
            stdin=asyncio.subprocess.PIPE if spec.sandbox else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        cpu = self._sessions[spec.task_id] = SessionCpu(proc.pid)
        return _ProcessContainer(proc, cpu.poll_leader)

    async def exec(
        self,
        spec: TaskSpec,
        workdir: Path,
        argv: list[str],
        env: dict[str, str],
        cwd: str | None,
        tty: Pty | None = None,
    ) -> tuple[asyncio.subprocess.Process, Callable[[int], None]]:
        """A subprocess beside the task's own, with its environment and working directory (paths under
        /root are the task's directory; there is no mount namespace)."""
        directory = host_path(workdir, cwd) if cwd else workdir / "root"
        if argv and argv[0] == FS_TOOLS_PATH:  # no mount namespace to put it at its path: run it from here
            argv = [sys.executable, fs_tools.__file__, *(_task_paths(workdir, a) for a in argv[1:])]
        if not directory.is_dir():
            raise NotADirectoryError(f"workdir {cwd} does not exist")
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=str(directory),
            env={**self._envs.get(spec.task_id, {}), **env},
            **exec_stdio(tty.slave if tty is not None else None),
        )

        def kill(signum: int) -> None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signum)

        return proc, kill

    @staticmethod
    def exec_exit_code(code: int, stderr_head: bytes) -> int:
        return code

    async def close(self) -> None:
        return None  # nothing of its own

    def changes(self, task_id: str) -> tuple[Path, int] | None:
        return None  # the task writes straight into the host's filesystem: no layer of its own

    def usage(self, task_id: str) -> tuple[float, int] | None:
        session = self._sessions.get(task_id)
        return session.read() if session is not None else None

    def address(self, task_id: str) -> str | None:
        return "127.0.0.1"  # a subprocess shares the host's network

    async def netns_path(self, task_id: str) -> str | None:
        return None  # a plain subprocess on the host's network

    async def cleanup(self, spec: TaskSpec, workdir: Path) -> None:
        self._envs.pop(spec.task_id, None)
        self._sessions.pop(spec.task_id, None)
        await asyncio.to_thread(shutil.rmtree, workdir, True)
