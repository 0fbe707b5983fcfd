"""Image building on a worker host: turns an ImageBuildSpec from the control plane into a build on this
host's layer cache, and answers which images are built here. Layers and manifests stay on the host;
the control plane only learns an image's Python version and working directory."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

from berth.domain.images import ImageBuildSpec, ImageInfo
from berth.worker.build_function import RunFunctionStep
from berth.worker.builder import BuildFailed, BuildRequest, ImageBuilder, LogFn
from berth.worker.dockerfile import Plan, parse
from berth.worker.files import FileSource
from berth.worker.layers import ImageManifest, ManifestStore, content_key
from berth.worker.registry import RegistryAuth
from berth.worker.snapshots import unpack_layer


def image_info(manifest: ImageManifest) -> ImageInfo:
    return ImageInfo(manifest.python_version, manifest.workdir, manifest.notice)


class ImageWorker:
    def __init__(self, builder: ImageBuilder, manifests: ManifestStore, files: FileSource) -> None:
        self._builder = builder
        self._manifests = manifests
        self._files = files

    def manifest(self, image_id: str) -> ImageManifest:
        """The built layers of an image, for the OCI runtime."""
        found = self._manifests.load(image_id)
        if found is None:
            raise FileNotFoundError(f"Image {image_id} is not built on this worker")
        return found

    def forget(self, image_ids: list[str]) -> list[str]:
        """Drops these images from this host and collects their layers that no other image uses; returns the
        layer directories removed."""
        candidates: set[Path] = set()
        for image_id in image_ids:
            manifest = self._manifests.forget(image_id)
            if manifest is not None:
                candidates.update(Path(p) for p in manifest.layers)
        return [str(p) for p in self._builder.layers.collect(candidates)]

    def info(self, image_id: str) -> ImageInfo | None:
        found = self._manifests.load(image_id)
        return image_info(found) if found is not None else None

    async def build(self, spec: ImageBuildSpec, on_log: LogFn) -> ImageInfo:
        if spec.snapshot_layer:
            manifest = await self._snapshot(spec)
        else:
            manifest = await self._builder.build(await self._request(spec), on_log)
        manifest.key = spec.key
        self._manifests.save(manifest)
        return image_info(manifest)

    def _base(self, image_id: str) -> ImageManifest:
        found = self._manifests.load(image_id)
        if found is None:
            raise BuildFailed(f"The base image {image_id} is not built on this worker")
        return found

    async def _snapshot(self, spec: ImageBuildSpec) -> ImageManifest:
        """A sandbox's snapshot: its packed layer (fetched by content, unpacked once per host) over its image."""
        if set(spec.base_images) != {"base"}:
            raise BuildFailed("A filesystem snapshot needs exactly one base image")
        base = self._base(spec.base_images["base"])
        layers = self._builder.layers
        key = content_key("snapshot", spec.snapshot_layer)
        layer = layers.get(key)
        if layer is None:
            await self._files.fetch([spec.snapshot_layer])
            tmp = layers.new_tmp()
            try:
                await asyncio.to_thread(unpack_layer, self._files.path(spec.snapshot_layer), tmp)
            except BaseException:
                layers.discard(tmp)
                raise
            layer = layers.commit(key, tmp)
        return replace(base, image_id=spec.image_id, layers=[*base.layers, str(layer)], env=dict(base.env))

    async def _request(self, spec: ImageBuildSpec) -> BuildRequest:
        if spec.function is not None:
            fn = spec.function
            if len(spec.base_images) != 1:
                raise BuildFailed("Image.run_function() needs exactly one base image")
            step = RunFunctionStep.create(fn.function_def, fn.build_function, fn.env, fn.files, fn.binds)
            function_base = self._base(next(iter(spec.base_images.values())))
            return BuildRequest(
                spec.image_id, Plan("base"), function_base, env=spec.env, force=spec.force, function_step=step
            )
        plan = parse(spec.dockerfile_commands)
        base = self._base(spec.base_images[plan.base]) if plan.base in spec.base_images else None
        if plan.base == "base" and base is None:
            raise BuildFailed("FROM base, but the request names no built base image")
        await self._files.fetch(f.sha256 for f in spec.context)
        context: dict[str, Path] = {f.path: self._files.path(f.sha256) for f in spec.context}
        modes = {f.path: f.mode for f in spec.context if f.mode}
        auth = RegistryAuth(spec.registry.auth_type, spec.registry.env) if spec.registry else None
        return BuildRequest(
            spec.image_id,
            plan,
            base,
            context,
            spec.env,
            spec.build_args,
            spec.force,
            registry_auth=auth,
            context_modes=modes,
        )
