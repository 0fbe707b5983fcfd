"""The local worker with the process runtime's container wrapper over a real subprocess."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

from berth.domain.spec import TaskSpec
from berth.worker.agent import LocalWorker
from berth.worker.files import LocalFiles
from berth.worker.runtime.process import _ProcessContainer


class _ShellRuntime:
    """Starts a shell command instead of the modal entrypoint, the way ProcessRuntime starts it."""

    name = "shell"
    isolated = False

    def __init__(self, script: str) -> None:
        self.script = script

    async def start(self, spec: TaskSpec, workdir: Path, env: dict[str, str]) -> _ProcessContainer:
        proc = await asyncio.create_subprocess_exec(
            "sh",
            "-c",
            self.script,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        return _ProcessContainer(proc)

    async def cleanup(self, spec: TaskSpec, workdir: Path) -> None:
        pass

    async def close(self) -> None:
        pass

    async def exec(
        self, spec: TaskSpec, workdir: Path, argv: list[str], env: dict[str, str], cwd: str | None
    ) -> tuple[asyncio.subprocess.Process, Callable[[int], None]]:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **env},
        )
        return proc, proc.send_signal

    @staticmethod
    def exec_exit_code(code: int, stderr_head: bytes) -> int:
        return code


async def test_exit_is_reported_and_leftover_children_end_with_the_container(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    runtime = _ShellRuntime(f"sleep 300 & echo $! > {pid_file}; echo started; exit 3")
    output: list[str] = []
    exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def on_exit(spec: TaskSpec, code: int) -> None:
        exited.set_result(code)

    worker = LocalWorker(runtime, tmp_path, lambda spec, fd, text: output.append(text), on_exit, LocalFiles(tmp_path))
    await worker.start(TaskSpec("ta-1", "fu-1", "ap-1", b"", "unix:///nowhere", "secret"))
    # The background child holds the output pipes open; the exit must be reported regardless.
    assert await asyncio.wait_for(exited, 30) == 3
    assert "started" in "".join(output)
    child = int(pid_file.read_text())
    for _ in range(50):
        if not os.path.exists(f"/proc/{child}") or open(f"/proc/{child}/stat").read().split()[2] == "Z":
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"child {child} outlived its container")


class _SlowStartRuntime(_ShellRuntime):
    """A runtime whose start takes a while after the container process exists (as OCI starts do)."""

    def __init__(self, script: str, started: asyncio.Event) -> None:
        super().__init__(script)
        self.started = started
        self.pids: list[int] = []

    async def start(self, spec: TaskSpec, workdir: Path, env: dict[str, str]) -> _ProcessContainer:
        container = await super().start(spec, workdir, env)
        self.pids.append(container._proc.pid)
        self.started.set()
        await asyncio.sleep(0.5)
        return container


async def test_a_container_whose_launch_is_cancelled_is_still_stopped_at_shutdown(tmp_path: Path) -> None:
    started = asyncio.Event()
    runtime = _SlowStartRuntime("sleep 300", started)
    exits: list[int] = []

    async def on_exit(spec: TaskSpec, code: int) -> None:
        exits.append(code)

    worker = LocalWorker(runtime, tmp_path, lambda spec, fd, text: None, on_exit, LocalFiles(tmp_path))
    launch = asyncio.create_task(worker.start(TaskSpec("ta-1", "fu-1", "ap-1", b"", "unix:///nowhere", "secret")))
    await started.wait()
    launch.cancel()  # the server stops while the autoscaler is mid-launch
    await asyncio.gather(launch, return_exceptions=True)
    await worker.shutdown(grace_s=2.0)
    pid = runtime.pids[0]
    assert exits, "the container was never stopped"
    assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
    # and once shutting down, the worker starts nothing new
    try:
        await worker.start(TaskSpec("ta-2", "fu-1", "ap-1", b"", "unix:///nowhere", "secret"))
    except RuntimeError as exc:
        assert "shutting down" in str(exc)
    else:
        raise AssertionError("a container started after shutdown")
    assert len(runtime.pids) == 1
