"""A volume's committed content as a manifest: every file by path, with the sha256 of its content (kept in the
blob store's content-addressed files), its mode and size, and every directory. On a control plane with
remote workers or several replicas (`berth server`), the manifest is what a volume *is*: each replica and
each worker holds a directory that is only a cache of one manifest, and a commit publishes a new one.

A commit is a three-way merge at file level, as Modal's volumes behave: what this copy changed since the
manifest it started from (its base) is laid over the newest manifest, so two containers that commit
different files both keep theirs, and for the same file the later commit wins.

Symlinks, sockets and other special files are not carried (a volume holds files and directories).
These functions block on disk I/O; callers run them in a thread."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

_CHUNK = 1 << 20


@dataclass(frozen=True)
class FileItem:
    sha256: str
    mode: int
    size: int


@dataclass
class Manifest:
    files: dict[str, FileItem] = field(default_factory=dict)
    dirs: set[str] = field(default_factory=set)

    def encode(self) -> bytes:
        body = {
            "files": {p: [f.sha256, f.mode, f.size] for p, f in sorted(self.files.items())},
            "dirs": sorted(self.dirs),
        }
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Manifest:
        body = json.loads(raw)
        files = {p: FileItem(str(s), int(m), int(n)) for p, (s, m, n) in body["files"].items()}
        for path in [*files, *body["dirs"]]:
            _check_path(path)
        return cls(files, set(body["dirs"]))

    def sha256(self) -> str:
        return hashlib.sha256(self.encode()).hexdigest()


@dataclass(frozen=True)
class Head:
    """A volume's committed state: a version that grows by one with each commit, and its manifest."""

    version: int
    manifest: str  # sha256 of the manifest's encoding; "" before the first commit

    def encode(self) -> bytes:
        return json.dumps({"version": self.version, "manifest": self.manifest}).encode()

    @classmethod
    def decode(cls, raw: bytes | None) -> Head:
        if not raw:
            return EMPTY_HEAD
        body = json.loads(raw)
        return cls(int(body["version"]), str(body["manifest"]))


EMPTY_HEAD = Head(0, "")


def _check_path(path: str) -> None:
    parts = path.split("/")
    if path.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"manifest path {path!r} is not a plain relative path")


# A cache of content hashes by (size, mtime_ns, inode), so a rescan reads only what changed.
StatCache = dict[str, tuple[int, int, int, str]]


def _hash_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def scan(root: Path, cache: StatCache, skip: Callable[[str], bool] = lambda rel: False) -> Manifest:
    """What `root` holds now. Hashes only files whose size, mtime or inode changed since `cache` saw them,
    and updates `cache`."""
    manifest = Manifest()
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        for name in list(dirnames):
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if skip(rel) or os.path.islink(os.path.join(dirpath, name)):
                dirnames.remove(name)
                continue
            manifest.dirs.add(rel)
        for name in filenames:
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            full = os.path.join(dirpath, name)
            if skip(rel):
                continue
            try:
                st = os.lstat(full)
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            known = cache.get(rel)
            if known is not None and known[:3] == (st.st_size, st.st_mtime_ns, st.st_ino):
                sha = known[3]
            else:
                sha = _hash_file(full)
                cache[rel] = (st.st_size, st.st_mtime_ns, st.st_ino, sha)
            manifest.files[rel] = FileItem(sha, stat.S_IMODE(st.st_mode), st.st_size)
            seen.add(rel)
    for gone in set(cache) - seen:
        del cache[gone]
    return manifest


def merge(base: Manifest, ours: Manifest, theirs: Manifest) -> Manifest:
    """`theirs` with what `ours` changed since `base`: our additions and changes win, our deletions apply."""
    result = Manifest(dict(theirs.files), set(theirs.dirs))
    for path, item in ours.files.items():
        if base.files.get(path) != item:
            result.files[path] = item
            result.dirs -= {path}
    for path in set(base.files) - set(ours.files):
        if theirs.files.get(path) == base.files[path]:  # not changed by them since: our deletion stands
            result.files.pop(path, None)
    for path in ours.dirs - base.dirs:
        result.dirs.add(path)
        result.files.pop(path, None)
    for path in base.dirs - ours.dirs:
        prefix = path + "/"
        if not any(p.startswith(prefix) for p in [*result.files, *result.dirs]):
            result.dirs.discard(path)
    # Every file's parent directories exist.
    for path in list(result.files):
        parent = path.rpartition("/")[0]
        while parent:
            result.dirs.add(parent)
            parent = parent.rpartition("/")[0]
    return result


def _remove_extra(root: Path, now: Manifest, target: Manifest) -> None:
    for path in set(now.files) - set(target.files):
        (root / path).unlink(missing_ok=True)
    for path in sorted(now.dirs - target.dirs, key=len, reverse=True):
        full = root / path
        if full.is_dir() and not full.is_symlink():
            for dirpath, _, filenames in os.walk(full, topdown=False):
                for name in filenames:
                    os.unlink(os.path.join(dirpath, name))
                os.rmdir(dirpath)


def apply(
    root: Path,
    target: Manifest,
    cache: StatCache,
    content: Callable[[str], Path],
    skip: Callable[[str], bool] = lambda rel: False,
) -> None:
    """Make `root` hold exactly `target`: files whose content differs are replaced atomically (a reader of
    the old file keeps reading it), files and directories not in `target` are removed. `content(sha256)`
    gives a local path holding that content."""
    now = scan(root, cache, skip)
    _remove_extra(root, now, target)
    for path in sorted(target.dirs, key=len):
        full = root / path
        if full.exists() and not full.is_dir():
            full.unlink()
        full.mkdir(parents=True, exist_ok=True)
    for path, item in target.files.items():
        have = now.files.get(path)
        full = root / path
        if have is not None and have.sha256 == item.sha256:
            if have.mode != item.mode:
                os.chmod(full, item.mode)
            continue
        if full.is_dir() and not full.is_symlink():
            os.rmdir(full)
        full.parent.mkdir(parents=True, exist_ok=True)
        tmp = full.parent / f".{full.name}.berth-sync"
        with open(content(item.sha256), "rb") as src, open(tmp, "wb") as dst:
            while chunk := src.read(_CHUNK):
                dst.write(chunk)
        os.chmod(tmp, item.mode)
        os.replace(tmp, full)
    scan(root, cache, skip)  # the cache now knows the files as written
