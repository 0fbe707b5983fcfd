"""Image layers on disk, keyed by content, and the manifests that say which layers make an image.

Layers live machine-wide (`<cache>/layers`), so every server on the host shares them: `index/<key>`
is a symlink to the directory holding that layer's files. A rebuild (force_build) writes a new
directory and swaps the link, so containers already running on the old one keep it.
Manifests (image id → base + layers + config) belong to one server and live in its data dir."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class ImageManifest:
    image_id: str
    base: str  # host path of the base rootfs (the lowest layer)
    layers: list[str] = field(default_factory=list)  # host paths, bottom to top
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/root"
    cmd: list[str] = field(default_factory=list)
    python_version: str = ""
    key: str = ""  # content key of the top of the image
    notice: str = ""  # e.g. that Berth substituted its own base for a registry image

    @property
    def python_series(self) -> str:
        return ".".join(self.python_version.split(".")[:2])

    def lower_dirs(self) -> list[str]:
        """overlayfs lowerdir order: top layer first."""
        return [*reversed(self.layers), self.base]


def content_key(*parts: str) -> str:
    """A layer's cache key: a hash of everything that went into it, in order."""
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode())
        h.update(b"\0")
    return h.hexdigest()[:32]


class LayerStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "index").mkdir(parents=True, exist_ok=True)
        (root / "dirs").mkdir(parents=True, exist_ok=True)
        (root / "tmp").mkdir(parents=True, exist_ok=True)

    def get(self, key: str) -> Path | None:
        link = self.root / "index" / key
        try:
            target = link.resolve(strict=True)
        except OSError:
            return None
        return target if target.is_dir() else None

    def new_tmp(self) -> Path:
        path = self.root / "tmp" / secrets.token_hex(8)
        path.mkdir(parents=True)
        return path

    def commit(self, key: str, tmp: Path) -> Path:
        final = self.root / "dirs" / f"{key}-{secrets.token_hex(4)}"
        tmp.rename(final)
        link = self.root / "index" / key
        staged = self.root / "index" / f".{key}.{secrets.token_hex(4)}"
        staged.symlink_to(final)
        os.replace(staged, link)
        return final

    def discard(self, tmp: Path) -> None:
        shutil.rmtree(tmp, ignore_errors=True)

    def register_manifests(self, manifests_dir: Path) -> None:
        """Records a server's manifest directory in the shared cache, so a collection on this host sees the
        layers every server's images use, not only its own."""
        roots = self.root / "roots"
        roots.mkdir(exist_ok=True)
        link = roots / hashlib.sha256(str(manifests_dir.resolve()).encode()).hexdigest()[:32]
        if not link.is_symlink():
            staged = roots / f".{link.name}.{secrets.token_hex(4)}"
            staged.symlink_to(manifests_dir.resolve())
            os.replace(staged, link)

    def layers_in_use(self) -> set[Path]:
        """The layers some image of some server on this host uses (servers whose data dir is gone: none)."""
        used: set[Path] = set()
        roots = self.root / "roots"
        for link in roots.iterdir() if roots.is_dir() else []:
            if not link.resolve().is_dir():
                link.unlink(missing_ok=True)
                continue
            used |= ManifestStore(link.resolve()).layers_in_use()
        return {p.resolve() for p in used if p.exists()}

    def collect(self, candidates: set[Path], mounts: str | None = None) -> list[Path]:
        """Removes those of `candidates` (layers of images just forgotten) that no image on this host uses
        and no running container has mounted: a deleted image's own layers go, the ones it shares stay."""
        if mounts is None:
            mounts = _mountinfo()
            if not mounts:  # cannot tell which layers running containers use: remove none
                return []
        used = self.layers_in_use()
        doomed = {c.resolve() for c in candidates if c.exists()} - used
        doomed = {d for d in doomed if str(d) not in mounts and d.parent == (self.root / "dirs").resolve()}
        for link in (self.root / "index").iterdir():
            with contextlib.suppress(OSError):
                if link.resolve(strict=True) in doomed:
                    link.unlink()
        for path in sorted(doomed):
            shutil.rmtree(path, ignore_errors=True)
        return sorted(doomed)

    def prune(self, min_age_s: float, mounts: str | None = None) -> list[Path]:
        """Remove what no image can use any more: layer directories no index entry points to (replaced by
        a force_build, or left by a crash mid-commit) and abandoned build directories under tmp/. Only
        those untouched for `min_age_s` and not in any mount (a running container's overlay) go, since
        other servers share this cache. Returns what was removed."""
        if mounts is None:
            mounts = _mountinfo()
            if not mounts:
                return []
        live = set()
        for link in (self.root / "index").iterdir():
            with contextlib.suppress(OSError):
                live.add(link.resolve(strict=True))
        cutoff = time.time() - min_age_s
        removed = []
        candidates = [*(self.root / "dirs").iterdir(), *(self.root / "tmp").iterdir()]
        for path in candidates:
            try:
                old = path.lstat().st_mtime < cutoff
            except OSError:
                continue
            if old and path.resolve() not in live and str(path) not in mounts:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
        return removed


def _mountinfo() -> str:
    try:
        return Path("/proc/self/mountinfo").read_text()
    except OSError:
        return ""


class ManifestStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def forget(self, image_id: str) -> ImageManifest | None:
        """Drops an image's manifest (its layers stay until collected); returns what it was."""
        path = self.root / f"{image_id}.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        path.unlink(missing_ok=True)
        return ImageManifest(**data)

    def layers_in_use(self) -> set[Path]:
        """Every layer directory some manifest of this store names."""
        used: set[Path] = set()
        for path in self.root.glob("*.json"):
            with contextlib.suppress(OSError, ValueError, TypeError):
                used.update(Path(p) for p in ImageManifest(**json.loads(path.read_text())).layers)
        return used

    def save(self, manifest: ImageManifest) -> None:
        path = self.root / f"{manifest.image_id}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(manifest)))
        os.replace(tmp, path)

    def load(self, image_id: str) -> ImageManifest | None:
        try:
            data = json.loads((self.root / f"{image_id}.json").read_text())
        except (OSError, ValueError):
            return None
        manifest = ImageManifest(**data)
        if not Path(manifest.base).is_dir() or not all(Path(p).is_dir() for p in manifest.layers):
            return None  # a layer was removed from the cache: the image must be built again
        return manifest
