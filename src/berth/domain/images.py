"""What the image service asks a worker to build, and what a worker reports about a built image.
Files are named by content (sha256) so the request means the same on any host."""

from __future__ import annotations

from dataclasses import dataclass, field

from modal_proto import api_pb2

from berth.domain.spec import BindMount, MountedFile


@dataclass(frozen=True)
class ContextFile:
    path: str  # path in the build context, e.g. /app/main.py
    sha256: str
    mode: int | None = None  # None: not known (the file keeps a default mode)


@dataclass(frozen=True)
class FunctionBuild:
    """An Image.run_function() step: the builder function and what its containers would get."""

    function_def: api_pb2.Function
    build_function: api_pb2.BuildFunction
    env: dict[str, str] = field(default_factory=dict)
    files: list[MountedFile] = field(default_factory=list)
    binds: list[BindMount] = field(default_factory=list)


@dataclass(frozen=True)
class RegistryCredentials:
    auth_type: int  # api_pb2.RegistryAuthType
    env: dict[str, str]  # the registry Secret's variables


@dataclass(frozen=True)
class ImageBuildSpec:
    image_id: str
    key: str  # content key of the definition; built images are found again by it
    dockerfile_commands: list[str] = field(default_factory=list)
    base_images: dict[str, str] = field(default_factory=dict)  # docker tag (FROM name) → built image id
    context: list[ContextFile] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # build-time env from the image's secrets
    build_args: dict[str, str] = field(default_factory=dict)
    force: bool = False
    registry: RegistryCredentials | None = None
    function: FunctionBuild | None = None
    # A sandbox's filesystem snapshot: the sha256 of its packed layer (a blob), over base_images["base"].
    snapshot_layer: str = ""


@dataclass(frozen=True)
class ImageInfo:
    """A built image as its containers see it."""

    python_version: str
    workdir: str
    # Said to the client with every build or cache hit, e.g. that a registry base was substituted.
    notice: str = ""


class BuildError(Exception):
    """A build failed; the message (the step's output and exit code, or why) is for the user."""


# How an ImageInfo's notice begins when emulator mode substituted the image's Python (worker/builder.py): the image
# service also sends it to the client as a warning, which it prints even without build output enabled.
EMULATED_NOTICE = "Berth is in emulator mode"
