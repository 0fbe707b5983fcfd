"""Base root filesystems and the modal client for containers, built once per machine and cached.

`debian_slim` asks for `python:<version>-slim-<codename>`, a Docker Hub image we cannot pull. We build
the equivalent from Debian packages instead (debootstrap + the distribution's Python), so only the
Python series Debian itself carries are available offline. Any other series comes from a
python-build-standalone archive on a mirror the operator configures (BERTH_PYTHON_MIRROR), unpacked
into /usr/local of a Debian base without Debian's Python; without one it is refused by name.

With image builder 2025.06 the modal client is not baked into images: containers get `/pkg`
(modal, modal_proto, modal_version, synchronicity and a sitecustomize.py) and `/__modal/deps`
(the client's dependencies for the image's Python), both bind-mounted read-only from this cache."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import importlib
import logging
import re
import shutil
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from berth.errors import FailedPrecondition
from berth.hostio import run_logged
from berth.pythons import MirrorUnreadable, download_standalone, patchlevel_version, standalone_url, unpack_standalone

log = logging.getLogger("berth.rootfs")

# The Python series each Debian release carries, i.e. what debootstrap can give us without a registry.
DEBIAN_PYTHONS = {"bookworm": "3.11", "trixie": "3.13"}
BASE_PACKAGES = "python3,python3-pip,python3-venv,python-is-python3,ca-certificates"
STANDALONE_BASE_PACKAGES = "ca-certificates"  # the interpreter comes from the archive, not Debian
STANDALONE_DEFAULT_CODENAME = "bookworm"
BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
}
MODAL_PACKAGES = ("modal", "modal_proto", "modal_version", "synchronicity")
SITECUSTOMIZE = "import sys; sys.path.append('/__modal/deps')\n"

LogFn = Callable[[str], None]
_PY_TAG = re.compile(r"^(?:docker\.io/)?(?:library/)?python:(\d+)\.(\d+)(?:\.\d+)?(?:-slim)?-(\w+)$")


@dataclass(frozen=True)
class BaseRequest:
    codename: str
    python_series: str  # "3.11"
    standalone: bool = False  # Python from a python-build-standalone archive instead of Debian's

    @property
    def key(self) -> str:
        return f"{self.codename}-py{self.python_series}" + ("-standalone" if self.standalone else "")


def parse_python_base(tag: str) -> BaseRequest | None:
    """`python:3.11.12-slim-bookworm` → BaseRequest(bookworm, 3.11); None for tags that are not Python bases."""
    m = _PY_TAG.match(tag)
    if m is None:
        return None
    return BaseRequest(m.group(3), f"{m.group(1)}.{m.group(2)}")


def nearest_python(series: str) -> BaseRequest:
    """The Debian release whose Python is closest to `series` (the older one on a tie): emulator mode's stand-in."""

    def distance(item: tuple[str, str]) -> tuple[int, int]:
        minor, wanted = int(item[1].split(".")[1]), int(series.split(".")[1])
        return abs(minor - wanted), minor

    codename, found = min(DEBIAN_PYTHONS.items(), key=distance)
    return BaseRequest(codename, found)


def resolve_base(req: BaseRequest, python_mirror: str = "", emulate: bool = False) -> BaseRequest:
    """Where the requested Python comes from: the Debian release that carries it, else (with a mirror)
    a python-build-standalone archive on a Debian base; never a different Python, except in emulator mode
    (the nearest Debian carries)."""
    available = ", ".join(f"{py} ({codename})" for codename, py in DEBIAN_PYTHONS.items())
    if DEBIAN_PYTHONS.get(req.codename) == req.python_series:
        return req
    for codename, series in DEBIAN_PYTHONS.items():
        if series == req.python_series:
            return BaseRequest(codename, series)
    if python_mirror:
        codename = req.codename if req.codename in DEBIAN_PYTHONS else STANDALONE_DEFAULT_CODENAME
        return BaseRequest(codename, req.python_series, standalone=True)
    if emulate:
        return nearest_python(req.python_series)
    raise FailedPrecondition(
        f"Python {req.python_series} is not available: without a container registry, Berth builds "
        f"debian_slim from Debian packages, which carry only Python {available}. "
        f"Use python_version= one of those, or set BERTH_PYTHON_MIRROR to a mirror of python-build-standalone "
        f"archives for other versions."
    )


def debian_mirror() -> str:
    """The first http(s) Debian mirror in the host's apt sources (deb.debian.org if none is found)."""
    candidates = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in candidates:
        with contextlib.suppress(OSError):
            for line in path.read_text().splitlines():
                m = re.search(r"(https?://\S*debian\S*)", line)
                if m and "security" not in m.group(1) and not line.lstrip().startswith("#"):
                    return m.group(1).rstrip("/")
    return "http://deb.debian.org/debian"


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


async def locked(path: Path, work: Callable[[], Awaitable[Path]]) -> Path:
    """Run `work` holding an inter-process lock; the lock is taken in a thread so the loop keeps serving."""
    path.parent.mkdir(parents=True, exist_ok=True)
    f = open(path, "w")  # noqa: SIM115 - held across awaits
    try:
        await asyncio.to_thread(fcntl.flock, f, fcntl.LOCK_EX)
        return await work()
    finally:
        fcntl.flock(f, fcntl.LOCK_UN)
        f.close()


class RootfsCache:
    """Machine-wide cache of debootstrapped bases and client packages under `root`."""

    def __init__(self, root: Path, python_mirror: str = "", emulate: bool = False) -> None:
        self.root = root
        self.python_mirror = python_mirror
        self.emulate = emulate

    def resolve(self, req: BaseRequest) -> BaseRequest:
        return resolve_base(req, self.python_mirror, self.emulate)

    def base_dir(self, req: BaseRequest) -> Path:
        return self.root / "base" / req.key / "rootfs"

    async def ensure_base(self, req: BaseRequest, on_log: LogFn) -> Path:
        req = self.resolve(req)
        rootfs = self.base_dir(req)
        if (rootfs.parent / "ready").exists():
            return rootfs

        async def build() -> Path:
            if (rootfs.parent / "ready").exists():
                return rootfs
            await self._debootstrap(req, rootfs, on_log)
            return rootfs

        return await locked(self.root / "locks" / f"base-{req.key}", build)

    async def _debootstrap(self, req: BaseRequest, rootfs: Path, on_log: LogFn) -> None:
        if shutil.which("debootstrap") is None:
            raise FailedPrecondition(
                "debootstrap is not installed; run `berth doctor --fix` (or scripts/setup-host.sh)"
            )
        tmp = rootfs.parent / "rootfs.tmp"
        await asyncio.to_thread(shutil.rmtree, tmp, True)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        # A Python from the mirror is fetched first: an unreachable mirror fails before a long debootstrap.
        archive = await self.download_standalone(req.python_series, tmp.parent, on_log) if req.standalone else None
        mirror = debian_mirror()
        on_log(f"Building base {req.key} from Debian packages ({mirror}); this happens once per machine\n")
        packages = STANDALONE_BASE_PACKAGES if req.standalone else BASE_PACKAGES
        argv = ["debootstrap", "--variant=minbase", f"--include={packages}", req.codename, str(tmp), mirror]
        code = await run_logged(argv, on_log)
        if code != 0:
            await asyncio.to_thread(shutil.rmtree, tmp, True)
            if archive is not None:
                archive.unlink(missing_ok=True)
            raise FailedPrecondition(f"debootstrap of {req.codename} failed with exit code {code}")
        if archive is not None:
            try:
                await self.unpack_standalone(req.python_series, archive, tmp, on_log)
            except BaseException:
                await asyncio.to_thread(shutil.rmtree, tmp, True)
                raise
        for marker in tmp.glob("usr/lib/python3*/EXTERNALLY-MANAGED"):
            marker.unlink()  # like the python:slim images, pip may install into the system Python
        for deb in (tmp / "var/cache/apt/archives").glob("*.deb"):
            deb.unlink()
        write_missing_records(tmp)
        await asyncio.to_thread(shutil.rmtree, rootfs, True)
        tmp.rename(rootfs)
        (rootfs.parent / "ready").write_text(python_version_of(rootfs) + "\n")

    async def install_standalone(self, series: str, rootfs: Path, on_log: LogFn) -> str:
        """Download the mirror's python-build-standalone archive for `series` and unpack it into
        rootfs/usr/local. Returns its version."""
        archive = await self.download_standalone(series, rootfs.parent, on_log)
        return await self.unpack_standalone(series, archive, rootfs, on_log)

    async def download_standalone(self, series: str, into: Path, on_log: LogFn) -> Path:
        """The archive for `series` from the mirror, checked against its .sha256 where the mirror has one."""
        url = standalone_url(self.python_mirror, series)
        on_log(f"Downloading Python {series} (python-build-standalone) from {url}\n")
        try:
            return await asyncio.to_thread(download_standalone, url, into / f"cpython-{series}.tar")
        except MirrorUnreadable as exc:
            raise FailedPrecondition(
                f"Python {series} is not available: the python-build-standalone mirror could not be read "
                f"({exc}). Debian carries only Python "
                + ", ".join(f"{py} ({codename})" for codename, py in DEBIAN_PYTHONS.items())
            ) from exc

    async def unpack_standalone(self, series: str, archive: Path, rootfs: Path, on_log: LogFn) -> str:
        """Unpack into rootfs/usr/local (the archive is removed) and check it really is Python `series`."""
        url = standalone_url(self.python_mirror, series)
        version = await unpack_standalone(series, archive, rootfs / "usr" / "local", url, on_log)
        on_log(f"Python {version} installed in /usr/local\n")
        return version

    def python_version(self, req: BaseRequest) -> str:
        ready = self.base_dir(self.resolve(req)).parent / "ready"
        with contextlib.suppress(OSError):
            return ready.read_text().strip()
        return req.python_series

    async def ensure_client(self, python_series: str, on_log: LogFn) -> tuple[Path, Path]:
        """(/pkg, /__modal/deps) host directories for containers running Python `python_series`."""
        from importlib.metadata import version

        modal_version = version("modal")

        top = self.root / "client" / f"modal-{modal_version}-py{python_series}"
        if (top / "ready").exists():
            return top / "pkg", top / "deps"

        async def build() -> Path:
            if not (top / "ready").exists():
                await self._build_client(top, python_series, modal_version, on_log)
            return top

        await locked(self.root / "locks" / f"client-{python_series}", build)
        return top / "pkg", top / "deps"

    async def _build_client(self, top: Path, series: str, version: str, on_log: LogFn) -> None:
        await asyncio.to_thread(shutil.rmtree, top, True)
        pkg, deps = top / "pkg", top / "deps"
        pkg.mkdir(parents=True)
        for name in MODAL_PACKAGES:
            src = Path(importlib.import_module(name).__path__[0])
            await asyncio.to_thread(
                shutil.copytree, src, pkg / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
            )
        (pkg / "sitecustomize.py").write_text(SITECUSTOMIZE)
        on_log(f"Installing the modal {version} client's dependencies for Python {series}\n")
        argv = [sys.executable, "-m", "pip", "install", "-q", "--target", str(deps), "--python-version", series]
        argv += ["--only-binary=:all:", "--implementation", "cp"]
        argv += ["--platform", "manylinux_2_36_x86_64", "--platform", "manylinux2014_x86_64", f"modal=={version}"]
        code = await run_logged(argv, on_log)
        if code != 0:
            raise FailedPrecondition(f"Could not install the modal client's dependencies for Python {series}")
        if f"{sys.version_info.major}.{sys.version_info.minor}" == series:
            # Containers mount these read-only and could not write bytecode: compile once here.
            await run_logged([sys.executable, "-m", "compileall", "-q", str(pkg), str(deps)], on_log)
        (top / "ready").write_text("ok\n")


def write_missing_records(rootfs: Path) -> None:
    """Give Debian-installed Python packages the RECORD pip needs to upgrade them. The python:slim
    images let `pip install --upgrade pip wheel` replace anything; Debian's packages ship without
    RECORD, and newer pips refuse to uninstall them (trixie: wheel), failing debian_slim's own step."""
    site = rootfs / "usr/lib/python3/dist-packages"
    lists = list((rootfs / "var/lib/dpkg/info").glob("*.list"))
    for info in site.glob("*.dist-info"):
        if (info / "RECORD").exists():
            continue
        marker = f"/usr/lib/python3/dist-packages/{info.name}"
        for listing in lists:
            files = listing.read_text(errors="replace").splitlines()
            if marker not in files:
                continue
            prefix = "/usr/lib/python3/dist-packages/"
            owned = [f.removeprefix(prefix) for f in files if f.startswith(prefix) and (rootfs / f[1:]).is_file()]
            (info / "RECORD").write_text("".join(f"{name},,\n" for name in owned) + f"{info.name}/RECORD,,\n")
            break


def python_version_of(rootfs: Path) -> str:
    """The full version of the rootfs's python3: a /usr/local build (python-build-standalone, or an image's
    own) first, else Debian's, from its stdlib directory, headers or changelog."""
    for lib in sorted(rootfs.glob("usr/local/lib/python3.*")):
        if (lib / "os.py").exists() and (rootfs / "usr/local/bin" / lib.name).exists():
            series = lib.name.removeprefix("python")
            return patchlevel_version(rootfs / "usr/local", series) or series
    for lib in sorted(rootfs.glob("usr/lib/python3.*")):
        if (lib / "os.py").exists():
            series = lib.name.removeprefix("python")
            doc = rootfs / f"usr/share/doc/python{series}-minimal/changelog.Debian.gz"
            version = _debian_changelog_version(doc)
            return version or series
    return ""


def _debian_changelog_version(path: Path) -> str:
    import gzip

    with contextlib.suppress(OSError):
        with gzip.open(path, "rt") as f:
            m = re.match(r"\S+ \((\d+\.\d+\.\d+)", f.readline())
            if m:
                return m.group(1)
    return ""
