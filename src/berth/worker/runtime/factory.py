"""Which container runtimes exist and how the OCI ones are put together with the image builder."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

from berth.worker.builder import ImageBuilder
from berth.worker.files import FileSource
from berth.worker.images import ImageWorker
from berth.worker.layers import LayerStore, ManifestStore
from berth.worker.rootfs import RootfsCache
from berth.worker.runtime.base import Runtime
from berth.worker.runtime.oci import SANDBOX_DISK_MB, ImageResolver, OciRuntime, RuntimeUnavailable
from berth.worker.sandbox_pool import PoolSettings

OCI_RUNTIMES = ("crun", "runc", "runsc")
LAYER_PRUNE_AGE_S = 86400.0
RUNTIMES = ("process", *OCI_RUNTIMES)


def check_runtime_name(name: str) -> None:
    if name not in RUNTIMES:
        raise ValueError(f"Unknown runtime {name!r}; available: {', '.join(RUNTIMES)}")
    fallback = "or start with `--runtime process` (a developer option with no isolation)"
    if name in OCI_RUNTIMES and shutil.which(name) is None:
        raise RuntimeUnavailable(
            f"{name} is not installed; run `berth doctor --fix` (or scripts/setup-host.sh), {fallback}"
        )
    if name in OCI_RUNTIMES and os.geteuid() != 0:
        raise RuntimeUnavailable(f"the {name} runtime needs root (it mounts overlays and sets up networks), {fallback}")


def image_worker(
    runtime: str,
    cache_dir: Path,
    data_dir: Path,
    ca_bundle: Path | None,
    files: FileSource,
    insecure_registries: tuple[str, ...] = (),
    python_mirror: str = "",
    emulate: bool = False,
) -> ImageWorker | None:
    """What builds real images on this host; None for the process runtime, which builds none."""
    if runtime not in OCI_RUNTIMES:
        return None
    check_runtime_name(runtime)
    # Builds always run on crun or runc: runsc cannot commit an overlay upper dir the same way.
    build_rt = runtime if runtime != "runsc" else (shutil.which("crun") or shutil.which("runc") or runtime)
    layers = LayerStore(cache_dir / "layers")
    # Layers a force_build replaced and builds a crash abandoned: gone once a day old and unmounted.
    threading.Thread(target=layers.prune, args=(LAYER_PRUNE_AGE_S,), name="layer-prune", daemon=True).start()
    rootfs = RootfsCache(cache_dir, python_mirror, emulate)
    builder = ImageBuilder(build_rt, rootfs, layers, ca_bundle, files, insecure_registries)
    manifests = ManifestStore(data_dir / "images")
    layers.register_manifests(manifests.root)
    return ImageWorker(builder, manifests, files)


def make_oci_runtime(
    name: str,
    cache_dir: Path,
    images: ImageResolver,
    ca_bundle: Path | None,
    files: FileSource,
    task_root: Path | None = None,
    sandbox_disk_mb: int = SANDBOX_DISK_MB,
    pool: PoolSettings | None = None,
    function_pool: PoolSettings | None = None,
) -> Runtime:
    check_runtime_name(name)
    runtime = OciRuntime(name, RootfsCache(cache_dir), images, ca_bundle, files, sandbox_disk_mb, pool, function_pool)
    if task_root is not None:
        runtime.remove_orphans(task_root)
    return runtime
