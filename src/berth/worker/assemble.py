"""Puts a worker host together from the settings: its files source, image builder, container runtime,
GPUs and the LocalWorker that serves the worker port. Used by `berth up` (in-process) and by any
process that runs a worker."""

from __future__ import annotations

import logging
from pathlib import Path

from berth.config import Settings
from berth.worker.agent import ExitSink, LocalWorker, OutputSink
from berth.worker.files import FileSource
from berth.worker.gpu import GpuPool, detect
from berth.worker.images import ImageWorker
from berth.worker.runtime import Runtime
from berth.worker.sandbox_pool import PoolSettings

log = logging.getLogger("berth.worker")


def make_runtime(name: str, settings: Settings, files: FileSource, images: ImageWorker | None) -> Runtime:
    if name == "process":
        from berth.worker.runtime.process import ProcessRuntime

        log.warning("runtime 'process': containers are plain subprocesses with NO isolation (developer option)")
        return ProcessRuntime(files)
    from berth.worker.runtime.factory import check_runtime_name, make_oci_runtime

    check_runtime_name(name)
    if images is None:
        raise ValueError(f"The {name} runtime needs an image builder")
    cache, disk_mb = settings.image_cache_dir, settings.sandbox_disk_mb
    pool = PoolSettings(
        settings.sandbox_pool, settings.sandbox_pool_max, settings.sandbox_pool_mb, settings.sandbox_pool_idle_s
    )
    function_pool = PoolSettings(
        settings.function_pool, settings.sandbox_pool_max, settings.sandbox_pool_mb, settings.sandbox_pool_idle_s
    )
    return make_oci_runtime(
        name, cache, images.manifest, _ca(settings), files, settings.task_dir, disk_mb, pool, function_pool
    )


def _ca(settings: Settings) -> Path | None:
    return Path(settings.ca_bundle) if Path(settings.ca_bundle).is_file() else None


def local_worker(settings: Settings, files: FileSource, on_output: OutputSink, on_exit: ExitSink) -> LocalWorker:
    from berth.worker.runtime.factory import image_worker

    images = image_worker(
        settings.runtime,
        settings.image_cache_dir,
        settings.data_dir,
        _ca(settings),
        files,
        settings.insecure_registries,
        python_mirror=settings.python_mirror,
        emulate=settings.emulate,
    )
    runtime = make_runtime(settings.runtime, settings, files, images)
    return LocalWorker(
        runtime, settings.task_dir, on_output, on_exit, files, GpuPool(detect()), images, settings.worker_slots
    )
