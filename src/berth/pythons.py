"""python-build-standalone: the interpreters Berth takes from an operator's mirror (BERTH_PYTHON_MIRROR)
for Python versions Debian lacks and for `Image.from_registry(add_python=...)`. Where an archive is on
the mirror, fetching it (checked against its .sha256), unpacking it, and the mount names the client
asks for. Used by image builds on workers and by the server, which serves add_python mounts."""

from __future__ import annotations

import contextlib
import platform
import re
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from berth.errors import FailedPrecondition
from berth.hostio import LogFn, file_sha256, run_logged

_STANDALONE_MOUNT = re.compile(r"^python-build-standalone\.(\d+)\.(\d+\.\d+\.\d+)-(\w+)$")


def standalone_url(mirror: str, series: str) -> str:
    """The archive for `series` on the mirror: a URL template with {version} (and {arch}), or a folder
    holding cpython-<series>-<arch>-unknown-linux-gnu-install_only.tar.gz."""
    arch = platform.machine()
    if "{version}" in mirror:
        return mirror.format(version=series, arch=arch)
    return f"{mirror.rstrip('/')}/cpython-{series}-{arch}-unknown-linux-gnu-install_only.tar.gz"


def _fetch(url: str, dest: Path) -> None:
    with urllib.request.urlopen(url, timeout=60) as resp, open(dest, "wb") as out:  # noqa: S310 - operator's mirror
        shutil.copyfileobj(resp, out, 1 << 20)


def _fetch_text(url: str) -> str | None:
    """The body at `url`, or None when the mirror has no such file."""
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:  # noqa: S310 - operator's mirror
            return str(resp.read(4096).decode("utf-8", errors="replace"))
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


class MirrorUnreadable(Exception):
    """The mirror did not give us the archive: str() is `<url>: <reason>`."""


def download_standalone(url: str, archive: Path) -> Path:
    """Fetch the python-build-standalone archive at `url` into `archive`, checked against `<url>.sha256` where
    the mirror has one. Blocking: run it in a thread. MirrorUnreadable when the mirror fails, FailedPrecondition
    when the archive does not match its checksum; nothing is left behind either way."""
    try:
        _fetch(url, archive)
        expected = _fetch_text(url + ".sha256")
    except (OSError, urllib.error.URLError) as exc:
        archive.unlink(missing_ok=True)
        raise MirrorUnreadable(f"{url}: {exc}") from exc
    if expected is not None and expected.split()[0].lower() != file_sha256(archive):
        archive.unlink(missing_ok=True)
        raise FailedPrecondition(f"The archive at {url} does not match its .sha256; refusing to use it")
    return archive


async def unpack_standalone(series: str, archive: Path, prefix: Path, url: str, on_log: LogFn) -> str:
    """Unpack an install_only archive (top folder `python/`) into `prefix` (the archive is removed), add the
    bin/python3, bin/python and bin/pip links older releases lack, and check it really is Python `series`
    (`url`, where it came from, is for the error). Returns its full version."""
    try:
        prefix.mkdir(parents=True, exist_ok=True)
        code = await run_logged(["tar", "-xf", str(archive), "-C", str(prefix), "--strip-components=1"], on_log)
        if code != 0:
            raise FailedPrecondition(f"Could not unpack the Python {series} archive (tar exit code {code})")
    finally:
        archive.unlink(missing_ok=True)
    bin_dir = prefix / "bin"
    for link, target in (("python3", f"python{series}"), ("python", "python3"), ("pip", "pip3")):
        if not (bin_dir / link).exists() and (bin_dir / target).exists():
            (bin_dir / link).symlink_to(target)
    version = patchlevel_version(prefix, series) if (bin_dir / f"python{series}").exists() else ""
    if not version.startswith(series + "."):
        raise FailedPrecondition(f"The archive at {url} holds Python {version or '(none found)'}, not {series}")
    return version


def patchlevel_version(prefix: Path, series: str) -> str:
    """PY_VERSION from an installed CPython's headers, read rather than run: image contents never execute
    on the host."""
    with contextlib.suppress(OSError):
        m = re.search(
            r'#define PY_VERSION\s+"([^"]+)"', (prefix / "include" / f"python{series}" / "patchlevel.h").read_text()
        )
        if m:
            return m.group(1)
    return ""


@dataclass(frozen=True)
class StandaloneMount:
    """What a python-build-standalone mount name (`python-build-standalone.<release>.<version>-gnu`) asks for."""

    release: str  # "20230826"
    version: str  # "3.11.5"

    @property
    def series(self) -> str:
        return ".".join(self.version.split(".")[:2])


def parse_standalone_mount(mount_name: str) -> StandaloneMount | None:
    m = _STANDALONE_MOUNT.match(mount_name)
    return StandaloneMount(m.group(1), m.group(2)) if m else None


def standalone_python_unavailable(mount_name: str, mirror_error: str = "") -> str | None:
    """The error for `add_python=`: its python-build-standalone mount, which Modal serves from its own
    storage, does not exist here, and there is no mirror (BERTH_PYTHON_MIRROR) or the mirror failed with
    `mirror_error`. None for other mount names."""
    wanted = parse_standalone_mount(mount_name)
    if wanted is None:
        return None
    if mirror_error:
        why = f"the python-build-standalone mirror (BERTH_PYTHON_MIRROR) failed: {mirror_error}"
    else:
        why = (
            "Modal serves it from its own storage and this server has no copy; set BERTH_PYTHON_MIRROR to a "
            f"mirror of python-build-standalone install_only archives for Python {wanted.series}"
        )
    return (
        f"Image.from_registry(add_python={wanted.series!r}) needs Python {wanted.version} from "
        f"python-build-standalone (release {wanted.release}), which is not reachable from this Berth server: "
        f"{why}. Or use an image that already has `python` on PATH, or install Python in it, e.g. "
        "setup_dockerfile_commands=['RUN apt-get update && apt-get install -y python3 python3-pip "
        "python-is-python3']."
    )
