"""What a worker needs to start one task container."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from berth.worker.gpu import Gpu


@dataclass(frozen=True)
class MountedFile:
    remote_path: str  # absolute path inside the container, e.g. /root/app.py
    source: Path  # content on the host (the content-addressed store)
    mode: int = 0o644


def place_files(files: list[MountedFile], root: Path) -> None:
    """Copy mounted files to their container paths under `root`; ValueError for a path that would escape."""
    for f in files:
        parts = Path(f.remote_path).parts
        if ".." in parts or not f.remote_path.startswith("/"):
            raise ValueError(f"Refusing mount path {f.remote_path!r}")
        dest = root / Path(*parts[1:])
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f.source, dest)
        os.chmod(dest, f.mode & 0o7777 or 0o644)


@dataclass(frozen=True)
class BindMount:
    """A host directory presented at a path inside the container (volumes)."""

    host_path: Path
    container_path: str  # absolute, e.g. /root/vol
    read_only: bool = False


@dataclass(frozen=True)
class TaskSpec:
    task_id: str
    function_id: str
    app_id: str
    container_arguments: bytes  # api_pb2.ContainerArguments
    server_url: str
    secret: str
    env: dict[str, str] = field(default_factory=dict)
    files: list[MountedFile] = field(default_factory=list)
    binds: list[BindMount] = field(default_factory=list)
    memory_mb: int = 0
    cpu: float = 0.0
    image_id: str = ""  # the function's image; OCI runtimes run on its built layers
    gpu_requests: tuple[tuple[str, int], ...] = ()  # gpu= as (TYPE, count), best first (fallbacks after)
    gpus: tuple[Gpu, ...] = ()  # what the worker gave it, set when the container starts
