"""The image builder: runs a parsed Dockerfile plan step by step on top of its base, one layer per
RUN/COPY/WORKDIR, each keyed by a hash of everything that went into it (the layer below, the
instruction, the environment, the copied files' contents). A cached layer is reused, a changed one
is rebuilt along with everything above it. RUN steps run in a crun container with network."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import posixpath
import shutil
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from berth.domain.images import EMULATED_NOTICE, BuildError
from berth.errors import FailedPrecondition
from berth.hostio import file_sha256, run_logged
from berth.worker import network
from berth.worker.cgroups import ContainerCgroup
from berth.worker.dockerfile import Plan, Step, expand
from berth.worker.files import FileSource
from berth.worker.layers import ImageManifest, LayerStore, content_key
from berth.worker.oci_config import Bind, ContainerConfig, build_config
from berth.worker.registry import PullFailed, RegistryAuth, RegistryPuller, require_python
from berth.worker.rootfs import BASE_ENV, RootfsCache, parse_python_base
from berth.worker.runtime.oci import (
    BUNDLE_ROOT,
    STATE_ROOT,
    ensure_private_tmpfs,
    mount_overlay,
    nofile_limit,
    standard_binds,
    umount,
)
from berth.worker.tools import uv_binary

LogFn = Callable[[str], None]
MIN_FREE_BYTES = 512 * 1024 * 1024
_TAIL_LINES = 30


class BuildFailed(BuildError):
    """A build step failed; the message carries its output and exit code."""


class FunctionStep(Protocol):
    """A build step that runs a user function (Image.run_function; see build_function.py)."""

    async def run(
        self, builder: ImageBuilder, req: BuildRequest, state: ImageManifest, on_log: LogFn
    ) -> ImageManifest: ...


@dataclass
class BuildRequest:
    image_id: str
    plan: Plan
    base: ImageManifest | None  # for FROM base
    context: dict[str, Path] = field(default_factory=dict)  # context path (/x/y) → host file
    env: dict[str, str] = field(default_factory=dict)  # build-time env from secrets
    build_args: dict[str, str] = field(default_factory=dict)
    force: bool = False
    registry_auth: RegistryAuth | None = None  # from_registry's Secret, for FROM <registry image>
    function_step: FunctionStep | None = None  # runs after the plan's steps
    context_modes: dict[str, int] = field(default_factory=dict)  # context path → mode, where known


CopyTarget = tuple[str, Path, int | None]  # container path, host file, mode (None: the host file's)


def copy_targets(
    srcs: list[str], dest: str, workdir: str, context: dict[str, Path], modes: dict[str, int] | None = None
) -> list[CopyTarget]:
    """(container path, host file, mode) for COPY srcs... dest from the build context, with Docker's rules:
    a directory source copies its contents, a file lands at dest (or in it when dest ends with /).
    `modes` holds the context files' modes where the client sent them (mounted files carry theirs)."""
    modes = modes or {}
    dest = dest if dest.startswith("/") else posixpath.join(workdir, dest)
    out: list[CopyTarget] = []
    for src in srcs:
        norm = posixpath.normpath("/" + src.lstrip("/"))  # ".", "./a", "a" and "/a" are all context paths
        matched = False
        for path, host in sorted(context.items()):
            if path == norm:
                into_dir = dest.endswith("/") or len(srcs) > 1
                target = posixpath.join(dest, posixpath.basename(path)) if into_dir else dest
                out.append((target, host, modes.get(path)))
                matched = True
            elif norm == "/" or path.startswith(norm.rstrip("/") + "/"):
                rel = posixpath.relpath(path, norm)
                out.append((posixpath.normpath(posixpath.join(dest, rel)), host, modes.get(path)))
                matched = True
        if not matched:
            raise BuildFailed(f"COPY failed: {src} is not in the build context")
    return out


class ImageBuilder:
    def __init__(
        self,
        runtime: str,
        rootfs: RootfsCache,
        layers: LayerStore,
        ca_bundle: Path | None,
        files: FileSource,
        insecure_registries: tuple[str, ...] = (),
    ) -> None:
        self.files = files  # where build contexts and run_function mounts come from
        self.runtime = runtime
        self.rootfs = rootfs
        self.layers = layers
        self.ca_bundle = ca_bundle
        self.registry = RegistryPuller(layers, rootfs.root / "locks", ca_bundle, insecure_registries)

    async def build(self, req: BuildRequest, on_log: LogFn) -> ImageManifest:
        state = await self._from(req, on_log)
        args = dict(req.build_args)
        for step in req.plan.steps:
            state = await self._step(req, state, step, args, on_log)
        if req.function_step is not None:
            state = await req.function_step.run(self, req, state, on_log)
        if not state.python_version:  # a registry image: Modal runs `python` from the image's PATH
            try:
                state = replace(state, python_version=require_python(state, req.plan.base))
            except PullFailed as exc:
                raise BuildFailed(str(exc)) from None
        return replace(state, image_id=req.image_id)

    async def _from(self, req: BuildRequest, on_log: LogFn) -> ImageManifest:
        tag = req.plan.base
        if tag == "base":
            if req.base is None:
                raise BuildFailed("FROM base, but the base image is not built")
            return replace(req.base, layers=list(req.base.layers), env=dict(req.base.env))
        python_base = parse_python_base(tag)
        if python_base is not None:
            resolved = self.rootfs.resolve(python_base)
            if resolved.codename != python_base.codename:
                on_log(f"Python {python_base.python_series} comes from Debian {resolved.codename}, not {tag}\n")
            rootfs = await self.rootfs.ensure_base(resolved, on_log)
            version = self.rootfs.python_version(resolved)
            origin = "python-build-standalone" if resolved.standalone else "built from Debian packages"
            on_log(f"=> FROM {tag}: Debian {resolved.codename} with Python {version} ({origin})\n")
            notice = (
                f"{tag} was not pulled from a registry: Berth substituted its own base, Debian {resolved.codename} "
                f"with Python {version} ({origin}). Only Python and the Debian base are there, nothing else "
                "from the registry image."
            )
            key = content_key("debootstrap", resolved.key)
            if resolved.python_series != python_base.python_series:  # emulator mode (rootfs.resolve_base)
                notice = (
                    f"{EMULATED_NOTICE}: the image asks for Python {python_base.python_series}, which this "
                    f"machine cannot provide, so it runs Python {version} (Debian {resolved.codename}) instead"
                )
                on_log(f"Warning: {notice}\n")
            elif _is_debian_slim(req.plan):  # the base Berth builds debian_slim on by design: nothing to announce
                notice = ""
            else:
                on_log(f"Warning: {notice}\n")
            return ImageManifest("", str(rootfs), [], dict(BASE_ENV), "/root", [], version, key, notice)
        try:
            return await self.registry.pull(tag, req.registry_auth, on_log)  # see registry.py
        except PullFailed as exc:
            raise BuildFailed(str(exc)) from None

    async def _step(
        self, req: BuildRequest, state: ImageManifest, step: Step, args: dict[str, str], on_log: LogFn
    ) -> ImageManifest:
        scope = {**args, **state.env}
        if step.op == "ENV":
            env = dict(state.env)
            for pair in step.args:
                k, _, v = pair.partition("=")
                env[k] = expand(v, {**args, **env})
            return replace(state, env=env, key=content_key(state.key, "ENV", json.dumps(env, sort_keys=True)))
        if step.op == "ARG":
            name, _, default = step.args[0].partition("=")
            args.setdefault(name, default)
            return state
        if step.op in ("CMD", "ENTRYPOINT"):
            cmd = list(step.args[1:]) if step.args[0] == "exec" else ["/bin/sh", "-c", step.args[1]]
            return replace(state, cmd=cmd)
        if step.op == "WORKDIR":
            workdir = posixpath.normpath(posixpath.join(state.workdir, expand(step.args[0], scope)))
            key = content_key(state.key, "WORKDIR", workdir)
            layer = await self._layer(key, req.force, lambda d: _mkdirs(d, workdir))
            return replace(state, workdir=workdir, layers=[*state.layers, str(layer)], key=key)
        if step.op == "COPY":
            return await self._copy(req, state, step, scope, on_log)
        return await self._run(req, state, step, args, on_log)

    async def _layer(self, key: str, force: bool, fill: Callable[[Path], None]) -> Path:
        found = None if force else self.layers.get(key)
        if found is not None:
            return found
        tmp = self.layers.new_tmp()
        try:
            await asyncio.to_thread(fill, tmp)
        except OSError as exc:
            self.layers.discard(tmp)
            raise _disk_error(exc, self.layers.root) from exc
        return self.layers.commit(key, tmp)

    async def _copy(
        self, req: BuildRequest, state: ImageManifest, step: Step, scope: dict[str, str], on_log: LogFn
    ) -> ImageManifest:
        srcs, dest = [expand(s, scope) for s in step.args[:-1]], expand(step.args[-1], scope)
        source_image = step.option("from")
        if source_image is not None:
            if not source_image.startswith("ghcr.io/astral-sh/uv:") or srcs != ["/uv"]:
                raise BuildFailed(f"COPY --from={source_image} is not supported (only the uv binary is): {step.text}")
            version = source_image.rpartition(":")[2]
            uv = await uv_binary(self.rootfs.root / "tools", version, on_log)
            targets: list[CopyTarget] = [(dest if not dest.endswith("/") else dest + "uv", uv, 0o755)]
        else:
            targets = copy_targets(srcs, dest, state.workdir, req.context, req.context_modes)
        digest = content_key(*(f"{path}:{file_sha256(host)}:{mode}" for path, host, mode in targets))
        key = content_key(state.key, "COPY", step.text, digest)
        on_log(f"=> {step.text}\n")
        layer = await self._layer(key, req.force, lambda d: _place(d, targets))
        return replace(state, layers=[*state.layers, str(layer)], key=key)

    async def _run(
        self, req: BuildRequest, state: ImageManifest, step: Step, args: dict[str, str], on_log: LogFn
    ) -> ImageManifest:
        secrets_digest = content_key(json.dumps(req.env, sort_keys=True))
        env_digest = json.dumps(state.env, sort_keys=True)
        key = content_key(state.key, "RUN", step.text, env_digest, state.workdir, secrets_digest)

        async def run(tmp: Path) -> None:
            await self._run_container(tmp, state, step, {**args, **state.env, **req.env}, on_log)

        return await self.container_layer(state, key, step.text, req.force, run, on_log)

    async def container_layer(
        self,
        state: ImageManifest,
        key: str,
        label: str,
        force: bool,
        run: Callable[[Path], Awaitable[None]],
        on_log: LogFn,
    ) -> ImageManifest:
        """The layer `key` on top of `state`: from the cache, or made by `run(tmp)`, which runs a container
        whose overlay upper dir is tmp/upper and becomes the layer. A failed run leaves nothing behind."""
        found = None if force else self.layers.get(key)
        if found is not None:
            on_log(f"=> {label} (cached)\n")
            return replace(state, layers=[*state.layers, str(found)], key=key)
        on_log(f"=> {label}\n")
        free = shutil.disk_usage(self.layers.root).free
        if free < MIN_FREE_BYTES:
            raise BuildFailed(f"Out of disk: only {free // 2**20} MiB free in {self.layers.root}")
        tmp = self.layers.new_tmp()
        try:
            await run(tmp)
            layer = await asyncio.to_thread(self._commit_upper, key, tmp)
        except BaseException:
            await asyncio.to_thread(shutil.rmtree, tmp, True)
            raise
        return replace(state, layers=[*state.layers, str(layer)], key=key)

    def _commit_upper(self, key: str, tmp: Path) -> Path:
        upper = tmp / "upper"
        layer_tmp = self.layers.new_tmp()
        layer_tmp.rmdir()
        upper.rename(layer_tmp)
        shutil.rmtree(tmp, ignore_errors=True)
        return self.layers.commit(key, layer_tmp)

    async def _run_container(
        self, tmp: Path, state: ImageManifest, step: Step, env: dict[str, str], on_log: LogFn
    ) -> None:
        merged = tmp / "merged"
        await asyncio.to_thread(mount_overlay, state.lower_dirs(), tmp / "upper", tmp / "work", merged)
        cid = f"berth-build-{tmp.name}"
        cgroup = ContainerCgroup(cid)
        net = None
        try:
            (merged / state.workdir.lstrip("/")).mkdir(parents=True, exist_ok=True)
            hosts = tmp / "hosts"
            hosts.write_text("127.0.0.1\tlocalhost\n::1\tlocalhost\n")
            cgroup.create(0)
            net = await network.setup(cid)
            argv = list(step.args[1:]) if step.args[0] == "exec" else ["/bin/sh", "-c", step.args[1]]
            build_env = {
                **env,
                "PIP_CONFIG_FILE": "/dev/null",
                "SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt",
                "REQUESTS_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt",
                "DEBIAN_FRONTEND": "noninteractive",
                "HOME": "/root",
            }
            config = ContainerConfig(
                args=argv,
                env=build_env,
                rootfs=str(merged),
                cwd=state.workdir,
                hostname="buildkit",
                netns_path=net.netns_path,
                cgroups_path=cgroup.container_path,
                nofile=nofile_limit(),
                binds=[*standard_binds(self.ca_bundle), Bind(str(hosts), "/etc/hosts")],
            )
            code, out = await self.run_container(cid, config, on_log)
            if code != 0:
                hint = (
                    f"\nThe build ran out of disk space in {self.layers.root}: free some space there, or point "
                    "BERTH_IMAGE_CACHE at a larger disk."
                    if "No space left on device" in out
                    else ""
                )
                raise BuildFailed(f"Build step failed with exit code {code}: {step.text}\n{out}{hint}")
        finally:
            if net is not None:
                await network.teardown(net)
            await asyncio.to_thread(umount, merged)
            await asyncio.to_thread(cgroup.remove)

    async def run_container(
        self, cid: str, config: ContainerConfig, on_log: LogFn, timeout_s: float | None = None
    ) -> tuple[int, str]:
        """Run a build container to its end, its output streamed to on_log: (exit code, its last lines).
        config.json can hold secret values (build secrets), so the bundle lives on the private tmpfs and
        goes with the container. TimeoutError after timeout_s."""
        await asyncio.to_thread(ensure_private_tmpfs, BUNDLE_ROOT)
        bundle = BUNDLE_ROOT / cid
        bundle.mkdir(parents=True, exist_ok=True)
        tail: deque[str] = deque(maxlen=_TAIL_LINES)

        def log_line(line: str) -> None:
            tail.append(line)
            on_log(line)

        try:
            (bundle / "config.json").write_text(json.dumps(build_config(config)))
            run = run_logged([self.runtime, "--root", STATE_ROOT, "run", "--bundle", str(bundle), cid], log_line)
            code = await asyncio.wait_for(run, timeout_s)
        finally:
            await run_logged([self.runtime, "--root", STATE_ROOT, "delete", "--force", cid], lambda _: None)
            await asyncio.to_thread(shutil.rmtree, bundle, True)
        return code, "".join(tail)


def _mkdirs(root: Path, path: str) -> None:
    (root / path.lstrip("/")).mkdir(parents=True, exist_ok=True)


def _place(root: Path, targets: list[CopyTarget]) -> None:
    for path, host, mode in targets:
        # Anchored at "/" before normalizing, so no "..", however it got into the path, climbs out of the layer.
        dest = root / posixpath.normpath("/" + path).lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(host, dest)
        if mode is not None and mode & 0o7777:
            os.chmod(dest, mode & 0o7777)


def _disk_error(exc: OSError, where: Path) -> Exception:
    if exc.errno == errno.ENOSPC:
        return BuildFailed(f"Out of disk space while writing a layer under {where}")
    return FailedPrecondition(f"Could not write a layer under {where}: {exc}")


def _is_debian_slim(plan: Plan) -> bool:
    """Image.debian_slim()'s own definition (`FROM python:X.Y.Z-slim-<codename>`, then its apt and pip steps),
    as opposed to a registry image a user asked for by name (from_registry, a Dockerfile, `modal image pull`)."""
    texts = [step.text for step in plan.steps[:2]]
    return texts[:1] == ["RUN apt-get update"] and texts[1:2] == ["RUN apt-get install -y gcc gfortran build-essential"]
