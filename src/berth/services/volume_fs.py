"""File operations on one volume's host directory: the storage both volume protocols and mounted containers
share. Every path a client names is checked to stay inside the volume, also through symlinks. These functions
block on disk I/O; the volume service runs them in a worker thread."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from modal_proto import api_pb2

from berth.errors import AlreadyExists, DiskFull, InvalidArgument, NotFound
from berth.ids import new_id

FileEntry = api_pb2.FileEntry


def relative(path: str) -> PurePosixPath:
    """A client path ('/a/b', 'a/b', '') as a path relative to the volume root ('.' for the root)."""
    if "\0" in path:
        raise InvalidArgument(f"Path {path!r} contains a NUL byte")
    parts = [p for p in PurePosixPath("/" + path).parts[1:] if p not in ("", ".")]
    if ".." in parts:
        raise InvalidArgument(f"Path {path!r} is outside the volume: '..' is not allowed")
    return PurePosixPath(*parts) if parts else PurePosixPath(".")


def ensure_room(directory: Path, nbytes: int) -> None:
    """DiskFull before a write of `nbytes` that the disk under `directory` has no room for: a client that
    retries block uploads for minutes learns at once instead."""
    free = shutil.disk_usage(directory).free
    if free < nbytes:
        raise DiskFull(f"{nbytes} bytes to write, {free} free")


def _replace_or_discard(tmp: Path, target: Path, write: Callable[[], None]) -> None:
    """Run `write` (which fills tmp) and rename tmp over target; a write that fails (a full disk) leaves
    neither a partial target nor the temp file."""
    try:
        write()
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, target)


class VolumeDir:
    def __init__(self, root: Path, tmp_dir: Path) -> None:
        self.root = root
        self._tmp = tmp_dir

    def host(self, path: str | PurePosixPath) -> Path:
        rel = path if isinstance(path, PurePosixPath) else relative(path)
        target = self.root / rel
        real_root = os.path.realpath(self.root)
        real = os.path.realpath(target)
        if real != real_root and not real.startswith(real_root + os.sep):
            raise InvalidArgument(f"Path {str(rel)!r} resolves outside the volume")
        return target

    def link_itself(self, rel: PurePosixPath) -> Path:
        """The entry at `rel` itself, not what it links to: only its parent must resolve inside the volume,
        so a symlink pointing out of the volume can still be removed (unlinking it never touches its target)."""
        return self.host(rel.parent) / rel.name

    def _entry(self, path: Path) -> api_pb2.FileEntry:
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            kind = FileEntry.FileType.SYMLINK
        elif stat.S_ISDIR(st.st_mode):
            kind = FileEntry.FileType.DIRECTORY
        else:
            kind = FileEntry.FileType.FILE
        rel = path.relative_to(self.root).as_posix()
        return FileEntry(path=rel, type=kind, mtime=int(st.st_mtime), size=st.st_size)

    def listing(self, path: str, recursive: bool) -> list[api_pb2.FileEntry]:
        target = self.host(path)
        if not os.path.lexists(target):
            raise NotFound(f"No such file or directory: {path}")
        if not target.is_dir() or target.is_symlink():
            return [self._entry(target)]
        if not recursive:
            return [self._entry(Path(e.path)) for e in sorted(os.scandir(target), key=lambda e: e.name)]
        out: list[api_pb2.FileEntry] = []
        for dirpath, dirnames, filenames in os.walk(target):
            dirnames.sort()
            for name in [*dirnames, *sorted(filenames)]:
                out.append(self._entry(Path(dirpath) / name))
        return out

    def stat_file(self, path: str) -> tuple[Path, int]:
        target = self.host(path)
        if not target.is_file():
            if target.is_dir():
                raise InvalidArgument(f"{path} is a directory, not a file")
            raise NotFound(f"No such file: {path}")
        return target, target.stat().st_size

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        target, _ = self.stat_file(path)
        with open(target, "rb") as f:
            f.seek(offset)
            return f.read(length)

    def check_writable(self, path: str, overwrite: bool) -> Path:
        rel = relative(path)
        if rel == PurePosixPath("."):
            raise InvalidArgument("A file cannot be written at the volume root")
        target = self.host(rel)
        if target.is_dir():
            raise AlreadyExists(f"{path}: a directory exists at this path and cannot be overwritten by a file")
        if os.path.lexists(target) and not overwrite:
            raise AlreadyExists(f"{path}: file already exists (use force/overwrite to replace it)")
        for parent in rel.parents:
            p = self.root / parent
            if os.path.lexists(p) and not p.is_dir():
                raise InvalidArgument(f"{path}: parent {parent} is a file, not a directory")
        return target

    def write_from(self, target: Path, sources: list[Path], mode: int) -> None:
        """Writes the concatenation of sources to target atomically (temp file, then rename)."""
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._tmp / new_id("vf")

        def write() -> None:
            with open(tmp, "wb") as out:
                for src in sources:
                    with open(src, "rb") as f:
                        shutil.copyfileobj(f, out, 1024 * 1024)
            os.chmod(tmp, (mode & 0o7777) or 0o644)

        _replace_or_discard(tmp, target, write)

    def write_bytes(self, target: Path, data: bytes, mode: int = 0o644) -> None:
        """Writes data to target atomically (temp file, then rename), so a reader never sees half a file."""
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._tmp / new_id("vf")

        def write() -> None:
            tmp.write_bytes(data)
            os.chmod(tmp, mode)

        _replace_or_discard(tmp, target, write)

    def remove(self, path: str, recursive: bool) -> None:
        rel = relative(path)
        if rel == PurePosixPath("."):
            raise InvalidArgument("The volume root cannot be removed; delete the volume instead")
        target = self.link_itself(rel)
        if not os.path.lexists(target):
            raise NotFound(f"No such file or directory: {path}")
        if target.is_dir() and not target.is_symlink():
            if recursive:
                shutil.rmtree(target)
            elif any(target.iterdir()):
                raise InvalidArgument(f"{path} is a non-empty directory; remove it with recursive=True")
            else:
                target.rmdir()
        else:
            target.unlink()

    def copy(self, src_paths: list[str], dst_path: str, recursive: bool) -> None:
        """UNIX cp semantics: several sources, a trailing slash or an existing directory copy into dst."""
        if not src_paths:
            raise InvalidArgument("No source paths to copy")
        dst = self.host(dst_path)
        into = len(src_paths) > 1 or dst_path.endswith("/") or dst.is_dir()
        sources = []
        for src_path in src_paths:
            src = self.host(src_path)
            if relative(src_path) == PurePosixPath("."):
                raise InvalidArgument("The volume root cannot be copied")
            if not os.path.lexists(src):
                raise NotFound(f"No such file or directory: {src_path}")
            if src.is_dir() and not recursive:
                raise InvalidArgument(f"{src_path} is a directory; copy it with recursive=True")
            sources.append(src)
        for src in sources:
            target = dst / src.name if into else dst
            if src.is_dir():
                shutil.copytree(src, target, symlinks=True, dirs_exist_ok=True)
            else:
                self.write_from(target, [src], src.stat().st_mode)
