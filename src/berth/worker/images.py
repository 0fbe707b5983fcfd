"""Image building on a worker host: turns an ImageBuildSpec from the control plane into a build on this
host's layer cache, and answers which images are built here. Layers and manifests stay on the host;
the control plane only learns an image's Python version and working directory."""

from __future__ import annotations

from pathlib import Path

from berth.domain.images import ImageBuildSpec, ImageInfo
from berth.worker.build_function import RunFunctionStep
from berth.worker.builder import BuildFailed, BuildRequest, ImageBuilder, LogFn
from berth.worker.dockerfile import Plan, parse
from berth.worker.files import FileSource
from berth.worker.layers import ImageManifest, ManifestStore
from berth.worker.registry import RegistryAuth


def image_info(manifest: ImageManifest) -> ImageInfo:
    return ImageInfo(manifest.python_version, manifest.workdir)


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

    def info(self, image_id: str) -> ImageInfo | None:
        found = self._manifests.load(image_id)
        return image_info(found) if found is not None else None

    async def build(self, spec: ImageBuildSpec, on_log: LogFn) -> ImageInfo:
        manifest = await self._builder.build(await self._request(spec), on_log)
        manifest.key = spec.key
        self._manifests.save(manifest)
        return image_info(manifest)

    def _base(self, image_id: str) -> ImageManifest:
        found = self._manifests.load(image_id)
        if found is None:
            raise BuildFailed(f"The base image {image_id} is not built on this worker")
        return found

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
