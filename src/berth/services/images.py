"""Images: ImageGetOrCreate and ImageJoinStreaming. An image definition is keyed by its content
(commands, base image, copied files, build secrets); an unchanged one comes back at once, a new one is
built in the background by the worker's image builder while the client follows the build log.
A failed build is not recorded, so the next attempt builds again.

An Image.run_function() step names a builder Function (created by FunctionCreate) that the builder
runs once in the image built so far (see worker/build_function.py); its secrets count in the key.

Without an OCI runtime (the process runtime) there is nothing to build: every image runs on the
worker's own Python, so an image counts as built as soon as it is defined. run_function images are
refused there: the function's filesystem changes would have nowhere to go."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from modal_proto import api_pb2

from berth import client_warnings
from berth.clock import Clock
from berth.domain.images import (
    EMULATED_NOTICE,
    BuildError,
    ContextFile,
    FunctionBuild,
    ImageBuildSpec,
    ImageInfo,
    RegistryCredentials,
)
from berth.errors import BerthError, NotFound
from berth.ids import new_id
from berth.services.notify import Notifier
from berth.store.ports import BlobStore, ObjectStore
from berth.telemetry import Telemetry
from berth.workers.port import WorkerPort

if TYPE_CHECKING:
    from berth.domain.spec import BuiltArguments

log = logging.getLogger("berth.images")

# What EnvironmentGetOrCreate tells the client: it decides the Dockerfile commands the client sends.
IMAGE_BUILDER_VERSION = "2025.06"
_JOIN_TIMEOUT_S = 55.0
# Records beside an image's own object, under ids of their own (an object id names one object of any kind):
_STARTED = "image_build_started"
# A build that was under way when its server stopped: nothing of it was kept, and the next run builds it again.
_INTERRUPTED = api_pb2.GenericResult(
    status=api_pb2.GenericResult.GENERIC_STATUS_FAILURE,
    exception="The Berth server restarted while this image was being built; nothing of the unfinished build "
    "is used. Run again to build it.",
)
_DELETED = "image_deleted"  # a deleted image's tombstone, id '<image id>/deleted'
_BUILD_STEP = "image_build"  # when an image was built and by which app (its logs are that app's), '<image id>/build'


def builder_task_id(image_id: str) -> str:
    """The task id an image's build log lines carry in its builder app's logs."""
    return f"ta-build-{image_id.removeprefix('im-')}"


MountFiles = Callable[[str], Awaitable[list[api_pb2.MountFile]]]
SecretEnv = Callable[[str], Awaitable[dict[str, str]]]
FunctionLayout = Callable[[str], Awaitable["BuiltArguments"]]
NEEDS_OCI = "Image.run_function() needs an OCI runtime to build images: start the server with `berth up --runtime crun`"


@dataclass
class _Build:
    image_id: str
    key: str
    app_id: str = ""  # the app whose client asked for it
    logs: list[str] = field(default_factory=list)
    result: api_pb2.GenericResult | None = None
    metadata: api_pb2.ImageMetadata | None = None
    task: asyncio.Task[None] | None = None
    started_at: float = field(default_factory=time.time)


def _success() -> api_pb2.GenericResult:
    return api_pb2.GenericResult(status=api_pb2.GenericResult.GENERIC_STATUS_SUCCESS)


class ImageService:
    def __init__(
        self,
        store: ObjectStore,
        clock: Clock,
        blobs: BlobStore,
        mount_files: MountFiles,
        secret_env: SecretEnv,
        worker: WorkerPort,
    ) -> None:
        self._store = store
        self._clock = clock
        self._blobs = blobs
        self.telemetry: Telemetry | None = None
        self._mount_files = mount_files
        self._secret_env = secret_env
        self._worker = worker
        self._builds: dict[str, _Build] = {}  # image id → build in progress or just finished
        self._building: dict[str, str] = {}  # content key → image id being built
        self._notices: dict[str, _Build] = {}  # image id → what a cache hit on it says (a finished "build")
        self._notifier = Notifier()
        # A function's definition, secrets, mounts and volumes, as its containers get them (set by wiring).
        self.function_layout: FunctionLayout | None = None
        # Keeps build log lines as the builder app's logs (set by wiring), for `modal image logs` later.
        self.keep_log: Callable[[str, api_pb2.TaskLogsBatch], None] | None = None

    def metadata(self, info: ImageInfo | None = None) -> api_pb2.ImageMetadata:
        if info is None:
            v = sys.version_info
            return api_pb2.ImageMetadata(
                python_version_info=f"{v.major}.{v.minor}.{v.micro}",
                image_builder_version=IMAGE_BUILDER_VERSION,
                workdir="/root",
            )
        return api_pb2.ImageMetadata(
            python_version_info=info.python_version,
            image_builder_version=IMAGE_BUILDER_VERSION,
            workdir=info.workdir,
        )

    async def _content_key(self, image: api_pb2.Image, build_function_id: str = "") -> str:
        """Hash of what the image is made of; per-run ids (context mounts, secrets) are replaced by content."""
        canonical = api_pb2.Image()
        canonical.CopyFrom(image)
        canonical.ClearField("context_mount_id")
        canonical.ClearField("secret_ids")
        h = hashlib.sha256(canonical.SerializeToString(deterministic=True))
        if image.context_mount_id:
            for f in sorted(await self._mount_files(image.context_mount_id), key=lambda f: f.filename):
                h.update(f"{f.filename}:{f.sha256_hex}:{f.mode}\n".encode())
        for secret_id in image.secret_ids:
            env = await self._secret_env(secret_id)
            h.update(repr(sorted(env.items())).encode())
        if build_function_id and self.function_layout is not None:
            h.update(repr(sorted((await self.function_layout(build_function_id)).env.items())).encode())
        return h.hexdigest()

    async def get_or_create(self, req: api_pb2.ImageGetOrCreateRequest) -> api_pb2.ImageGetOrCreateResponse:
        if not self._worker.builds_images and (req.image.HasField("build_function") or req.build_function_id):
            failed = api_pb2.GenericResult(status=api_pb2.GenericResult.GENERIC_STATUS_FAILURE, exception=NEEDS_OCI)
            return api_pb2.ImageGetOrCreateResponse(image_id=new_id("im"), result=failed)
        key = await self._content_key(req.image, req.build_function_id)
        if not self._worker.builds_images:
            return await self._define_only(req, key)
        force = req.force_build or req.ignore_cache
        if not force:
            found = await self._store.object_by_key("image", key)
            info = self._worker.image_info(found[0]) if found and not await self._deleted(found[0]) else None
            if found is not None and info is not None:
                if info.notice:  # said again on a cache hit: the client follows a finished build's log
                    cached = _Build(found[0], key, req.app_id, [f"Warning: {info.notice}\n"], _success())
                    cached.metadata = self.metadata(info)
                    self._notices[found[0]] = cached
                    return api_pb2.ImageGetOrCreateResponse(image_id=found[0])
                return api_pb2.ImageGetOrCreateResponse(
                    image_id=found[0], result=_success(), metadata=self.metadata(info)
                )
            if key in self._building:
                return api_pb2.ImageGetOrCreateResponse(image_id=self._building[key])
        build = _Build(new_id("im"), key, req.app_id)
        self._builds[build.image_id] = build
        self._building[key] = build.image_id
        # Kept in the store so that a server that restarts mid-build can tell the client what happened.
        await self._store.put_object(_STARTED, f"{build.image_id}/started", b"", self._clock.now())
        build.task = asyncio.create_task(self._run_build(build, req, force))
        return api_pb2.ImageGetOrCreateResponse(image_id=build.image_id)

    async def _define_only(self, req: api_pb2.ImageGetOrCreateRequest, key: str) -> api_pb2.ImageGetOrCreateResponse:
        found = await self._store.object_by_key("image", key)
        if found is not None and not req.force_build and not await self._deleted(found[0]):
            image_id = found[0]
        else:
            image_id = new_id("im")
            await self._store.put_object("image", image_id, req.image.SerializeToString(), self._clock.now(), key=key)
        return api_pb2.ImageGetOrCreateResponse(image_id=image_id, result=_success(), metadata=self.metadata())

    async def shutdown(self) -> None:
        """Cancel running builds; their build containers are deleted as the cancellation unwinds."""
        running = [b.task for b in self._builds.values() if b.task is not None and not b.task.done()]
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    def builds(self) -> list[tuple[str, str, str, str]]:
        """The builds this server ran or runs, oldest first: (image id, the app that asked for it, 'building' |
        'succeeded' | 'failed', its log so far). Build logs are kept in memory, so a restart forgets them."""
        out = []
        for build in list(self._builds.values()):
            if build.result is None:
                status = "building"
            else:
                ok = build.result.status == api_pb2.GenericResult.GENERIC_STATUS_SUCCESS
                status = "succeeded" if ok else "failed"
            out.append((build.image_id, build.app_id, status, "".join(build.logs)))
        return out

    def _log(self, build: _Build, text: str) -> None:
        build.logs.append(text)
        self._notifier.notify(build.image_id)
        if self.keep_log is not None and build.app_id:
            item = api_pb2.TaskLogs(data=text, file_descriptor=api_pb2.FILE_DESCRIPTOR_STDOUT, timestamp=time.time())
            self.keep_log(build.app_id, api_pb2.TaskLogsBatch(task_id=builder_task_id(build.image_id), items=[item]))

    async def _run_build(self, build: _Build, req: api_pb2.ImageGetOrCreateRequest, force: bool) -> None:
        started = time.monotonic()
        try:
            spec = await self._spec(build, req, force)
            info = await self._worker.build_image(spec, lambda line: self._log(build, line))
            body = req.image.SerializeToString()
            await self._store.put_object("image", build.image_id, body, self._clock.now(), key=build.key)
            build.metadata = self.metadata(info)
            self._log(build, f"Built image {build.image_id} in {time.monotonic() - started:.1f}s\n")
            build.result = _success()
            step = {"app_id": build.app_id, "started_at": build.started_at, "finished_at": time.time()}
            await self._store.put_object(
                _BUILD_STEP, f"{build.image_id}/build", json.dumps(step).encode(), self._clock.now()
            )
        except (BuildError, BerthError) as exc:
            message = str(exc)
            self._log(build, f"\n{message}\n")
            build.result = api_pb2.GenericResult(status=api_pb2.GenericResult.GENERIC_STATUS_FAILURE, exception=message)
        except Exception as exc:
            log.exception("image build %s failed", build.image_id)
            message = f"Image build failed: {type(exc).__name__}: {exc}"
            build.result = api_pb2.GenericResult(status=api_pb2.GenericResult.GENERIC_STATUS_FAILURE, exception=message)
        finally:
            self._building.pop(build.key, None)
            self._notifier.notify(build.image_id)
            if self.telemetry is not None:
                ok = build.result is not None and build.result.status == api_pb2.GenericResult.GENERIC_STATUS_SUCCESS
                self.telemetry.image_built(ok, time.monotonic() - started)

    async def _spec(self, build: _Build, req: api_pb2.ImageGetOrCreateRequest, force: bool) -> ImageBuildSpec:
        image = req.image
        env: dict[str, str] = {}
        for secret_id in image.secret_ids:
            env.update(await self._secret_env(secret_id))
        bases = {b.docker_tag: b.image_id for b in image.base_images}
        if image.HasField("build_function") or req.build_function_id:
            if not req.build_function_id or self.function_layout is None:
                raise BuildError("Image.run_function(): the request names no builder function")
            built = await self.function_layout(req.build_function_id)
            fn = FunctionBuild(built.arguments.function_def, image.build_function, built.env, built.files, built.binds)
            return ImageBuildSpec(build.image_id, build.key, base_images=bases, env=env, force=force, function=fn)
        context: list[ContextFile] = []
        if image.context_mount_id:
            for f in await self._mount_files(image.context_mount_id):
                context.append(ContextFile(f.filename, f.sha256_hex, f.mode or None))
        context += [ContextFile(cf.filename, await self._context_file(cf.data)) for cf in image.context_files]
        registry = None
        if image.image_registry_config.secret_id:  # from_registry(secret=...): credentials for the pull
            registry_env = await self._secret_env(image.image_registry_config.secret_id)
            registry = RegistryCredentials(image.image_registry_config.registry_auth_type, registry_env)
        return ImageBuildSpec(
            build.image_id,
            build.key,
            list(image.dockerfile_commands),
            bases,
            context,
            env,
            dict(image.build_args),
            force,
            registry,
        )

    async def register_snapshot(self, base_image_id: str, archive: Path, sha256: str) -> str:
        """A sandbox's filesystem snapshot as an image: its packed layer goes to the blob store (so any worker
        can fetch it) and a worker builds the image from it over the sandbox's image, as it builds any other;
        returns the new image's id."""
        if not await self._blobs.has_file(sha256):
            await self._blobs.put_file(sha256, await asyncio.to_thread(archive.read_bytes))
        return await self.register_snapshot_layer(base_image_id, sha256)

    async def register_snapshot_layer(self, base_image_id: str, sha256: str) -> str:
        """register_snapshot for a layer already in the blob store (a remote worker stored it there first)."""
        if not await self._blobs.has_file(sha256):
            raise NotFound(f"Snapshot layer {sha256} was not uploaded")
        if await self._store.get_object("image", base_image_id) is None:
            raise NotFound(f"Image {base_image_id} not found")
        key = hashlib.sha256(f"snapshot:{base_image_id}:{sha256}".encode()).hexdigest()
        found = await self._store.object_by_key("image", key)
        if found is not None and self._worker.image_info(found[0]) is not None:  # the same changes, again
            return found[0]
        image_id = new_id("im")
        base = api_pb2.BaseImage(docker_tag="base", image_id=base_image_id)
        definition = api_pb2.Image(dockerfile_commands=["FROM base"], base_images=[base])
        spec = ImageBuildSpec(image_id, key, base_images={"base": base_image_id}, snapshot_layer=sha256)
        await self._worker.build_image(spec, lambda line: log.debug("snapshot %s: %s", image_id, line.rstrip()))
        await self._store.put_object("image", image_id, definition.SerializeToString(), self._clock.now(), key=key)
        return image_id

    async def _context_file(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        if not await self._blobs.has_file(sha):
            await self._blobs.put_file(sha, data)
        return sha

    async def mark_deleted(self, image_id: str) -> None:
        """A deleted image stays deleted: a tombstone (images are never removed from the object store, whose
        content key still leads to them), so from_id and the cache lookups skip it."""
        await self._store.put_object(_DELETED, f"{image_id}/deleted", b"", self._clock.now())
        self._builds.pop(image_id, None)
        self._notices.pop(image_id, None)

    async def build_chain(self, image_id: str) -> list[api_pb2.ImageBuildStep]:
        """ImageBuildChainGet: the builds of an image and of the images under it, bottom first; images
        Berth did not build itself (defined on the process runtime, built before it kept this) are left out."""
        await self.from_id(image_id)
        chain: list[api_pb2.ImageBuildStep] = []
        seen: set[str] = set()
        current: str | None = image_id
        while current is not None and current not in seen:
            seen.add(current)
            raw = await self._store.get_object(_BUILD_STEP, f"{current}/build")
            if raw is not None:
                step = json.loads(raw)
                out = api_pb2.ImageBuildStep(
                    image_id=current, builder_app_id=step["app_id"], builder_task_id=builder_task_id(current)
                )
                out.started_at.FromNanoseconds(int(step["started_at"] * 1e9))
                out.finished_at.FromNanoseconds(int(step["finished_at"] * 1e9))
                chain.append(out)
            body = await self._store.get_object("image", current)
            bases = list(api_pb2.Image.FromString(body).base_images) if body is not None else []
            current = bases[0].image_id if bases else None
        return list(reversed(chain))

    async def _deleted(self, image_id: str) -> bool:
        return await self._store.get_object(_DELETED, f"{image_id}/deleted") is not None

    async def from_id(self, image_id: str) -> api_pb2.ImageMetadata:
        """Image.from_id (`modal shell im-...`): a defined image's metadata; NotFound for an unknown or
        deleted id."""
        unknown = image_id not in self._builds and await self._store.get_object("image", image_id) is None
        if unknown or await self._deleted(image_id):
            raise NotFound(f"Image {image_id} not found")
        return self.metadata(self._worker.image_info(image_id) if self._worker.builds_images else None)

    def _warn_emulated(self, image_id: str) -> None:
        info = self._worker.image_info(image_id) if self._worker.builds_images else None
        if info is not None and info.notice.startswith(EMULATED_NOTICE):
            client_warnings.warn(info.notice)

    async def join(
        self, image_id: str, last_entry_id: str, timeout: float
    ) -> AsyncIterator[api_pb2.ImageJoinStreamingResponse]:
        build = self._notices.get(image_id) or self._builds.get(image_id)
        if build is None:
            if await self._store.get_object("image", image_id) is None:
                if await self._store.get_object(_STARTED, f"{image_id}/started") is not None:
                    yield api_pb2.ImageJoinStreamingResponse(result=_INTERRUPTED, eof=True)
                    return
                raise NotFound(f"Image {image_id} not found")
            info = self._worker.image_info(image_id) if self._worker.builds_images else None
            yield api_pb2.ImageJoinStreamingResponse(result=_success(), metadata=self.metadata(info), eof=True)
            return
        cursor = int(last_entry_id) if last_entry_id.isdigit() else 0
        deadline = time.monotonic() + min(timeout or _JOIN_TIMEOUT_S, _JOIN_TIMEOUT_S)
        while True:
            with self._notifier.listen(image_id) as waiter:
                if cursor < len(build.logs):
                    fd = api_pb2.FILE_DESCRIPTOR_STDOUT
                    logs = [api_pb2.TaskLogs(data=line, file_descriptor=fd) for line in build.logs[cursor:]]
                    cursor = len(build.logs)
                    yield api_pb2.ImageJoinStreamingResponse(task_logs=logs, entry_id=str(cursor))
                if build.result is not None:
                    self._warn_emulated(image_id)
                    yield api_pb2.ImageJoinStreamingResponse(
                        result=build.result, metadata=build.metadata, entry_id=str(cursor), eof=True
                    )
                    return
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not await waiter.wait(remaining):
                    return
