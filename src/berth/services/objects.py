"""Mounts, images and blobs: the objects a function depends on (secrets live in services/secrets.py)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from modal_proto import api_pb2

from berth.clock import Clock
from berth.errors import FailedPrecondition, InvalidArgument, NotFound
from berth.ids import new_id
from berth.pythons import (
    MirrorUnreadable,
    StandaloneMount,
    download_standalone,
    parse_standalone_mount,
    standalone_python_unavailable,
    standalone_url,
    unpack_standalone,
)
from berth.store.ports import BlobStore, ObjectStore

log = logging.getLogger("berth.objects")

_MAX_INLINE_FILE = 64 * 1024 * 1024
# python-build-standalone releases before this one have no bin/python: for them the client adds
# `RUN ln -s /usr/local/bin/python3 /usr/local/bin/python` after the COPY, which fails if the mount has one.
_FIRST_RELEASE_WITH_PYTHON_LINK = "20241008"


@dataclass(frozen=True)
class StandaloneFile:
    path: str  # in the mount: /python/<path in the archive>
    source: Path  # the host file holding its content
    mode: int


def standalone_mount_files(prefix: Path, *, python_link: bool = True) -> tuple[list[StandaloneFile], list[str]]:
    """The files of an unpacked install_only archive at `prefix` as mount files under /python, and why the
    entries left out were left out. A mount holds no links: a link to a regular file in the tree gets that
    file's content and mode at the link's path (bin/python3 → python3.11); links that leave the tree (an
    absolute /etc/... on the host is not the image's), dangling links, links to directories and special
    files are left out. Without `python_link` there is no bin/python (the client links it itself)."""
    root = prefix.resolve()
    files: list[StandaloneFile] = []
    skipped: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        for name in [*filenames, *(d for d in dirnames if (here / d).is_symlink())]:
            entry = here / name
            rel = entry.relative_to(root).as_posix()
            st = entry.lstat()
            source = entry
            if stat.S_ISLNK(st.st_mode):
                target = Path(os.path.realpath(entry))
                if not target.is_relative_to(root):
                    skipped.append(f"{rel} (a link to {os.readlink(entry)}, outside the archive)")
                    continue
                try:
                    st = target.stat()
                except OSError:
                    skipped.append(f"{rel} (a dangling link to {os.readlink(entry)})")
                    continue
                source = target
            if not stat.S_ISREG(st.st_mode):
                skipped.append(f"{rel} (not a regular file)")
                continue
            if rel == "bin/python" and not python_link:
                continue
            files.append(StandaloneFile(f"/python/{rel}", source, stat.S_IMODE(st.st_mode)))
    if not any(f.path == "/python/bin/python3" for f in files):
        raise FailedPrecondition("The python-build-standalone archive has no bin/python3")
    files.sort(key=lambda f: f.path)
    return files, skipped


def _mount_checksum(files: list[api_pb2.MountFile]) -> str:
    h = hashlib.sha256()
    for f in sorted(files, key=lambda f: f.filename):
        h.update(f"{f.filename}\0{f.sha256_hex}\0{f.mode}\n".encode())
    return h.hexdigest()


class ObjectService:
    def __init__(self, store: ObjectStore, blobs: BlobStore, clock: Clock, python_mirror: str = "") -> None:
        self._store = store
        self._blobs = blobs
        self._clock = clock
        self._python_mirror = python_mirror  # BERTH_PYTHON_MIRROR: where add_python's mounts come from
        self._standalone_locks: dict[str, asyncio.Lock] = {}

    # mounts
    async def missing_files(self, hashes: list[str]) -> list[str]:
        present = await asyncio.gather(*(self._blobs.has_file(h) for h in hashes))
        return [h for h, there in zip(hashes, present, strict=True) if not there]

    async def put_file(self, req: api_pb2.MountPutFileRequest) -> bool:
        if req.WhichOneof("data_oneof") == "data_blob_id":
            data = await self._blobs.read_blob(req.data_blob_id)
        elif req.WhichOneof("data_oneof") == "data":
            data = req.data
        else:
            return await self._blobs.has_file(req.sha256_hex)
        if len(data) > _MAX_INLINE_FILE and req.WhichOneof("data_oneof") == "data":
            raise InvalidArgument("Mount file too large to send inline; upload it as a blob")
        await self._blobs.put_file(req.sha256_hex, data)
        return True

    async def mount_get_or_create(self, req: api_pb2.MountGetOrCreateRequest) -> api_pb2.MountGetOrCreateResponse:
        files = list(req.files)
        for f in files:
            if not f.filename.startswith("/") or ".." in f.filename.split("/") or "\0" in f.filename:
                raise InvalidArgument(f"Mount file path must be absolute and normalized: {f.filename!r}")
        missing = set(await self.missing_files([f.sha256_hex for f in files]))
        for f in files:
            if f.sha256_hex in missing:
                raise InvalidArgument(f"Mount file {f.filename} was not uploaded (sha256 {f.sha256_hex})")
        checksum = _mount_checksum(files)
        key = None
        if req.deployment_name:
            key = f"{req.namespace}/{req.environment_name}/{req.deployment_name}"
            found = await self._store.object_by_key("mount", key)
            standalone = parse_standalone_mount(req.deployment_name)
            if not files and standalone is not None:
                if found is None or not api_pb2.MountGetOrCreateRequest.FromString(found[1]).files:
                    return await self._standalone_mount(standalone, req.deployment_name, key, req.namespace)
            if found is not None and not files:
                return self._mount_response(found[0], found[1])
        mount_id = new_id("mo")
        body = api_pb2.MountGetOrCreateRequest(files=files).SerializeToString()
        await self._store.put_object(
            "mount",
            mount_id,
            body,
            self._clock.now(),
            key=key,
            name=req.deployment_name or None,
            namespace=req.namespace,
            app_id=req.app_id or None,
        )
        return api_pb2.MountGetOrCreateResponse(
            mount_id=mount_id, handle_metadata=api_pb2.MountHandleMetadata(content_checksum_sha256_hex=checksum)
        )

    async def _standalone_mount(
        self, wanted: StandaloneMount, name: str, key: str, namespace: int
    ) -> api_pb2.MountGetOrCreateResponse:
        """add_python's python-build-standalone mount, which Modal serves from its own storage: made here
        from the operator's mirror (BERTH_PYTHON_MIRROR) the first time it is asked for, then stored under
        the name like any other mount."""
        if not self._python_mirror:
            raise NotFound(standalone_python_unavailable(name) or name)
        lock = self._standalone_locks.setdefault(key, asyncio.Lock())
        async with lock:  # one download per mount; later callers find it stored
            found = await self._store.object_by_key("mount", key)
            if found is not None and api_pb2.MountGetOrCreateRequest.FromString(found[1]).files:
                return self._mount_response(found[0], found[1])
            files = await self._standalone_files(wanted, name)
            mount_id = new_id("mo")
            body = api_pb2.MountGetOrCreateRequest(files=files).SerializeToString()
            await self._store.put_object(
                "mount", mount_id, body, self._clock.now(), key=key, name=name, namespace=namespace
            )
            return self._mount_response(mount_id, body)

    async def _standalone_files(self, wanted: StandaloneMount, name: str) -> list[api_pb2.MountFile]:
        url = standalone_url(self._python_mirror, wanted.series)
        log.info("mount %s: downloading Python %s from %s", name, wanted.series, url)
        tmp = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="berth-standalone-", dir=self._blobs.scratch_dir))
        try:
            archive = await asyncio.to_thread(download_standalone, url, tmp / "archive.tar")
            prefix = tmp / "python"
            version = await unpack_standalone(wanted.series, archive, prefix, url, lambda line: None)
            files = await self._store_standalone(prefix, wanted, name)
        except (MirrorUnreadable, FailedPrecondition) as exc:
            message = str(exc)
            log.warning("mount %s: %s", name, message)
            raise NotFound(standalone_python_unavailable(name, message) or message) from None
        finally:
            await asyncio.to_thread(shutil.rmtree, tmp, True)
        same = (
            ""
            if version == wanted.version
            else f" (the name asks for {wanted.version}: same series, another patch level)"
        )
        log.info("mount %s: Python %s from %s, %d files%s", name, version, url, len(files), same)
        return files

    async def _store_standalone(self, prefix: Path, wanted: StandaloneMount, name: str) -> list[api_pb2.MountFile]:
        """Put the unpacked tree's files in the content-addressed store."""
        link = wanted.release >= _FIRST_RELEASE_WITH_PYTHON_LINK
        entries, skipped = await asyncio.to_thread(standalone_mount_files, prefix, python_link=link)
        for reason in skipped:
            log.info("mount %s: left out %s", name, reason)
        out: list[api_pb2.MountFile] = []
        for entry in entries:
            data, sha = await asyncio.to_thread(_read_hashed, entry.source)
            if not await self._blobs.has_file(sha):
                await self._blobs.put_file(sha, data)
            out.append(api_pb2.MountFile(filename=entry.path, sha256_hex=sha, mode=entry.mode, size=len(data)))
        return out

    def _mount_response(self, mount_id: str, body: bytes) -> api_pb2.MountGetOrCreateResponse:
        files = list(api_pb2.MountGetOrCreateRequest.FromString(body).files)
        md = api_pb2.MountHandleMetadata(content_checksum_sha256_hex=_mount_checksum(files))
        return api_pb2.MountGetOrCreateResponse(mount_id=mount_id, handle_metadata=md)

    async def mount_files(self, mount_id: str) -> list[api_pb2.MountFile]:
        body = await self._store.get_object("mount", mount_id)
        if body is None:
            raise NotFound(f"Mount {mount_id} not found")
        return list(api_pb2.MountGetOrCreateRequest.FromString(body).files)

    async def layout_object(self, object_id: str) -> api_pb2.Object:
        if object_id.startswith("mo-"):
            body = await self._store.get_object("mount", object_id)
            if body is not None:
                return api_pb2.Object(
                    object_id=object_id, mount_handle_metadata=self._mount_response(object_id, body).handle_metadata
                )
        return api_pb2.Object(object_id=object_id)


def _read_hashed(path: Path) -> tuple[bytes, str]:
    data = path.read_bytes()
    return data, hashlib.sha256(data).hexdigest()
