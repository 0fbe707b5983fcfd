"""Image.run_function(): the client creates a builder Function (FunctionCreate with is_builder_function)
and asks for an image whose only step is that function. The builder runs it once in a container made
from the image built so far, with network, the image's env and secrets, the function's secrets, mounts and
volumes, and the modal client bound in as function containers get it; the container's resulting
filesystem (its overlay upper dir) becomes the new layer, as for RUN steps.

The function runs directly (build_function_runner.py loads it and calls it with its arguments), not through
the task machinery: a build container has no identity towards the server, so code in it cannot call
Modal objects, and modal.is_local() is True there. The app's mounted source and the mount points of
the binds sit in a lower layer of their own, so they stay out of the image.

The layer is keyed by the layer below, the function's definition (source and build args), its
serialized globals, its input (args, kwargs), the image's env and workdir and the secret values, so an
unchanged step comes from the cache and a changed one runs again with everything above it."""

from __future__ import annotations

import asyncio
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from modal_proto import api_pb2

from berth.domain.spec import BindMount, MountedFile
from berth.worker import network
from berth.worker.builder import BuildFailed, BuildRequest, ImageBuilder, LogFn
from berth.worker.cgroups import ContainerCgroup
from berth.worker.files import FileSource, place_files
from berth.worker.layers import ImageManifest, content_key
from berth.worker.oci_config import Bind, ContainerConfig
from berth.worker.runtime.oci import (
    CA_PATH,
    INNER,
    PIDS_LIMIT,
    TINI,
    mount_overlay,
    nofile_limit,
    standard_binds,
    umount,
)

RUNNER = Path(__file__).with_name("build_function_runner.py")
DEFAULT_TIMEOUT_S = 3600  # run_function's own default


@dataclass
class RunFunctionStep:
    """One run_function step: what the builder function is, what it gets, and what its layer is keyed by."""

    name: str
    function_def: api_pb2.Function
    function_input: api_pb2.FunctionInput
    digest: str  # definition, globals and input
    env: dict[str, str] = field(default_factory=dict)  # the function's secrets
    files: list[MountedFile] = field(default_factory=list)  # its mounts (the app's source)
    binds: list[BindMount] = field(default_factory=list)  # its volumes

    @classmethod
    def create(
        cls,
        function_def: api_pb2.Function,
        build_function: api_pb2.BuildFunction,
        env: dict[str, str],
        files: list[MountedFile],
        binds: list[BindMount],
    ) -> RunFunctionStep:
        gpu = function_def.resources.gpu_config
        if gpu.count or gpu.gpu_type:
            raise BuildFailed("Image.run_function(gpu=...) is not supported by this Berth server")
        digest = content_key(
            "RUN_FUNCTION",
            build_function.definition,
            build_function.globals.hex(),
            build_function.input.SerializeToString(deterministic=True).hex(),
        )
        name = function_def.function_name or function_def.implementation_name
        return cls(name, function_def, build_function.input, digest, env, files, binds)

    @property
    def _memory_mb(self) -> int:
        res = self.function_def.resources
        return res.memory_mb_max or res.memory_mb

    @property
    def timeout_s(self) -> int:
        return self.function_def.timeout_secs or DEFAULT_TIMEOUT_S

    async def run(self, builder: ImageBuilder, req: BuildRequest, state: ImageManifest, on_log: LogFn) -> ImageManifest:
        secrets = content_key(json.dumps(req.env, sort_keys=True), json.dumps(self.env, sort_keys=True))
        key = content_key(state.key, self.digest, json.dumps(state.env, sort_keys=True), state.workdir, secrets)
        env = {**state.env, **req.env, **self.env}

        async def run(tmp: Path) -> None:
            await self._run_container(builder, tmp, state, env, on_log)

        return await builder.container_layer(state, key, f"RUN FUNCTION {self.name}", req.force, run, on_log)

    def _prepare(self, tmp: Path, state: ImageManifest, source: FileSource) -> None:
        """The files the container sees but the layer must not keep: the mounts, the mount points of the
        binds, and (bound at /__berth) the runner with the function's definition and input."""
        extra = tmp / "extra"
        try:
            place_files(self.files, extra, source)
        except ValueError as exc:
            raise BuildFailed(str(exc)) from None
        for path in ["/root", state.workdir, "/pkg", "/__modal/deps", INNER, *(b.container_path for b in self.binds)]:
            (extra / path.lstrip("/")).mkdir(parents=True, exist_ok=True)
        inner = tmp / "inner"
        inner.mkdir()
        shutil.copyfile(RUNNER, inner / "run_function.py")
        (inner / "function.bin").write_bytes(self.function_def.SerializeToString())
        (inner / "input.bin").write_bytes(self.function_input.SerializeToString())
        (tmp / "hosts").write_text("127.0.0.1\tlocalhost\n::1\tlocalhost\n")

    def _env(self, env: dict[str, str]) -> dict[str, str]:
        out = dict(env)
        py_path = out.get("PYTHONPATH")
        out.update(
            {
                "HOME": "/root",
                "PYTHONPATH": f"/root:/pkg:{py_path}" if py_path else "/root:/pkg",
                "PYTHONUNBUFFERED": "1",
                "MODAL_IS_REMOTE": "1",
                "SSL_CERT_FILE": CA_PATH,
                "REQUESTS_CA_BUNDLE": CA_PATH,
                "PIP_CONFIG_FILE": "/dev/null",
            }
        )
        out.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        return out

    async def _run_container(
        self, builder: ImageBuilder, tmp: Path, state: ImageManifest, env: dict[str, str], on_log: LogFn
    ) -> None:
        await builder.files.fetch(f.sha256 for f in self.files)
        await asyncio.to_thread(self._prepare, tmp, state, builder.files)
        pkg, deps = await builder.rootfs.ensure_client(state.python_series or "3.11", on_log)
        merged = tmp / "merged"
        await asyncio.to_thread(
            mount_overlay, [str(tmp / "extra"), *state.lower_dirs()], tmp / "upper", tmp / "work", merged
        )
        cid = f"berth-buildfn-{tmp.name}"
        cgroup = ContainerCgroup(cid)
        net = None
        try:
            res = self.function_def.resources
            cgroup.create(self._memory_mb)
            net = await network.setup(cid)
            binds = [
                *standard_binds(builder.ca_bundle),
                Bind(str(tmp / "hosts"), "/etc/hosts"),
                Bind(str(pkg), "/pkg"),
                Bind(str(deps), "/__modal/deps"),
                Bind(str(tmp / "inner"), INNER, readonly=False),
            ]
            init: list[str] = []
            if Path(TINI).exists():
                binds.append(Bind(TINI, f"{INNER}/init"))
                init = [f"{INNER}/init", "-s", "--"]
            for b in self.binds:
                b.host_path.mkdir(parents=True, exist_ok=True)
                binds.append(Bind(str(b.host_path), b.container_path, readonly=b.read_only))
            config = ContainerConfig(
                args=[*init, "python", f"{INNER}/run_function.py"],
                env=self._env(env),
                rootfs=str(merged),
                cwd=state.workdir or "/root",
                hostname="buildkit",
                netns_path=net.netns_path,
                cgroups_path=cgroup.container_path,
                cpu=(res.milli_cpu_max or res.milli_cpu) / 1000,
                pids_limit=PIDS_LIMIT,
                nofile=nofile_limit(),
                binds=binds,
            )
            try:
                code, tail = await builder.run_container(cid, config, on_log, self.timeout_s)
            except TimeoutError:
                raise BuildFailed(f"Image.run_function({self.name}) timed out after {self.timeout_s}s") from None
            oom = code == 137 and cgroup.oom_killed()
            self._check(tmp / "inner" / "result.json", code, tail, oom)
        finally:
            if net is not None:
                await network.teardown(net)
            await asyncio.to_thread(umount, merged)
            await asyncio.to_thread(cgroup.remove)

    def _check(self, result_path: Path, code: int, tail: str, oom: bool) -> None:
        try:
            result = json.loads(result_path.read_text())
        except (OSError, ValueError):
            result = {}
        if code == 0 and result.get("ok"):
            return
        if "traceback" in result:
            raise BuildFailed(f"Image.run_function({self.name}) raised {result['exception']}\n{result['traceback']}")
        hint = f"\nIt ran out of memory (limit {self._memory_mb} MiB)." if oom else ""
        raise BuildFailed(f"Image.run_function({self.name}) failed with exit code {code}\n{tail}{hint}")
