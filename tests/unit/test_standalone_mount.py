"""add_python's python-build-standalone mount (`python-build-standalone.<release>.<version>-gnu`, looked up by
name in the GLOBAL namespace) is made from the operator's mirror (BERTH_PYTHON_MIRROR) the first time it is
asked for. The mirror here is a real HTTP server on loopback serving a small install_only-shaped archive."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import http.server
import io
import logging
import os
import tarfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from modal_proto import api_pb2

from berth.errors import FailedPrecondition, NotFound
from berth.pythons import standalone_url
from berth.services.objects import ObjectService, standalone_mount_files
from berth.store.local_blobs import LocalBlobStore
from berth.store.sqlite import SqliteStore

NAME = "python-build-standalone.20230826.3.11.5-gnu"  # what modal 1.6.4 asks for with add_python="3.11"
NEW_NAME = "python-build-standalone.20261021.3.11.17-gnu"  # a release that ships bin/python itself


class Clock:
    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


def _archive(version: str) -> bytes:
    """An install_only-shaped archive: top folder python/, bin/python3 a link, an absolute link out of it."""
    series = ".".join(version.split(".")[:2])
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:

        def add(name: str, data: bytes = b"", mode: int = 0o644, link: str = "") -> None:
            info = tarfile.TarInfo(f"python/{name}")
            if link:
                info.type, info.linkname = tarfile.SYMTYPE, link
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))

        add(f"bin/python{series}", b"\x7fELF interpreter", 0o755)
        add("bin/python3", link=f"python{series}")
        add(f"lib/python{series}/os.py", b"# os\n")
        add(f"lib/python{series}/lib-dynload/_ssl.so", b"\x7fELF ssl", 0o755)
        add(f"lib/python{series}/sitecustomize.py", link=f"/etc/python{series}/sitecustomize.py")
        add(f"include/python{series}/patchlevel.h", f'#define PY_VERSION      "{version}"\n'.encode())
    return buf.getvalue()


class Mirror:
    def __init__(self, root: Path, url: str) -> None:
        self.root, self.url = root, url
        self.downloads = 0
        self.delay = 0.0

    def publish(self, series: str, data: bytes) -> None:
        name = Path(standalone_url(self.url, series)).name
        (self.root / name).write_bytes(data)
        (self.root / f"{name}.sha256").write_text(f"{hashlib.sha256(data).hexdigest()}  {name}\n")


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[Mirror]:
    root = tmp_path / "mirror"
    root.mkdir()
    state: list[Mirror] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.endswith(".tar.gz"):
                state[0].downloads += 1
                time.sleep(state[0].delay)
            super().do_GET()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    state.append(Mirror(root, f"http://127.0.0.1:{server.server_address[1]}"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state[0]
    server.shutdown()
    server.server_close()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = await SqliteStore.open(tmp_path / "db.sqlite")
    yield s
    await s.close()


def _request(name: str = NAME) -> api_pb2.MountGetOrCreateRequest:
    return api_pb2.MountGetOrCreateRequest(
        deployment_name=name,
        namespace=api_pb2.DEPLOYMENT_NAMESPACE_GLOBAL,
        environment_name="main",
        object_creation_type=api_pb2.OBJECT_CREATION_TYPE_UNSPECIFIED,
    )


def test_links_become_copies_and_links_out_of_the_archive_are_left_out(tmp_path: Path) -> None:
    prefix = tmp_path / "python"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "lib/python3.11").mkdir(parents=True)
    (prefix / "bin/python3.11").write_bytes(b"interp")
    (prefix / "bin/python3.11").chmod(0o755)
    (prefix / "bin/python3").symlink_to("python3.11")
    (prefix / "bin/python").symlink_to("python3")
    (prefix / "lib/python3.11/os.py").write_text("# os\n")
    (prefix / "lib/python3.11/sitecustomize.py").symlink_to("/etc/hostname")  # the host's, not the image's
    (prefix / "lib/python3.11/gone.py").symlink_to("nowhere.py")
    (prefix / "lib/current").symlink_to("python3.11")  # a directory link
    os.mkfifo(prefix / "lib/fifo")

    files, skipped = standalone_mount_files(prefix)
    by_path = {f.path: f for f in files}
    assert sorted(by_path) == [
        "/python/bin/python",
        "/python/bin/python3",
        "/python/bin/python3.11",
        "/python/lib/python3.11/os.py",
    ]
    assert by_path["/python/bin/python"].source == (prefix / "bin/python3.11").resolve()
    assert by_path["/python/bin/python3"].mode == 0o755
    assert by_path["/python/lib/python3.11/os.py"].mode == 0o644
    assert any("sitecustomize.py" in s and "outside" in s for s in skipped)
    assert any("gone.py" in s and "dangling" in s for s in skipped)
    assert any(s.startswith("lib/current") for s in skipped) and any(s.startswith("lib/fifo") for s in skipped)

    # Releases before 20241008 have no bin/python: the client runs `ln -s .../python3 .../python` itself.
    old, _ = standalone_mount_files(prefix, python_link=False)
    assert "/python/bin/python" not in {f.path for f in old} and "/python/bin/python3" in {f.path for f in old}

    (prefix / "bin/python3").unlink()
    with pytest.raises(FailedPrecondition, match="no bin/python3"):
        standalone_mount_files(prefix)


async def test_the_mount_is_made_once_from_the_mirror_while_the_server_keeps_serving(
    mirror: Mirror, store: SqliteStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "berth.objects")
    mirror.publish("3.11", _archive("3.11.2"))
    mirror.delay = 0.3
    blobs = LocalBlobStore(tmp_path / "blobs")
    objects = ObjectService(store, blobs, Clock(), mirror.url)

    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.02)
            ticks += 1

    ticker = asyncio.create_task(tick())
    first, second, third = await asyncio.gather(*(objects.mount_get_or_create(_request()) for _ in range(3)))
    ticker.cancel()
    assert ticks >= 5  # the event loop ran while the archive downloaded
    assert mirror.downloads == 1
    assert first.mount_id == second.mount_id == third.mount_id
    assert first.handle_metadata.content_checksum_sha256_hex

    files = {f.filename: f for f in await objects.mount_files(first.mount_id)}
    assert sorted(files) == [
        "/python/bin/python3",  # no bin/python: release 20230826's client links it
        "/python/bin/python3.11",
        "/python/include/python3.11/patchlevel.h",
        "/python/lib/python3.11/lib-dynload/_ssl.so",
        "/python/lib/python3.11/os.py",
    ]
    interp = files["/python/bin/python3.11"]
    assert files["/python/bin/python3"].sha256_hex == interp.sha256_hex and interp.mode == 0o755
    assert await blobs.read_file(interp.sha256_hex) == b"\x7fELF interpreter"
    assert files["/python/lib/python3.11/os.py"].mode == 0o644
    assert not list((tmp_path / "blobs" / "tmp").iterdir())  # the download and the unpacked tree are gone

    logged = caplog.text
    assert standalone_url(mirror.url, "3.11") in logged and "Python 3.11.2" in logged
    assert "3.11.5" in logged and "patch level" in logged

    # Stored under the name: a later lookup (a new server process too) does not download again.
    again = await ObjectService(store, blobs, Clock(), mirror.url).mount_get_or_create(_request())
    assert again.mount_id == first.mount_id and mirror.downloads == 1


async def test_a_release_with_bin_python_keeps_it(mirror: Mirror, store: SqliteStore, tmp_path: Path) -> None:
    mirror.publish("3.11", _archive("3.11.17"))
    objects = ObjectService(store, LocalBlobStore(tmp_path / "blobs"), Clock(), mirror.url)
    made = await objects.mount_get_or_create(_request(NEW_NAME))
    names = {f.filename for f in await objects.mount_files(made.mount_id)}
    assert {"/python/bin/python", "/python/bin/python3"} <= names


async def test_another_series_is_refused(mirror: Mirror, store: SqliteStore, tmp_path: Path) -> None:
    mirror.publish("3.11", _archive("3.12.7"))
    objects = ObjectService(store, LocalBlobStore(tmp_path / "blobs"), Clock(), mirror.url)
    with pytest.raises(NotFound, match=r"add_python='3\.11'.*mirror \(BERTH_PYTHON_MIRROR\) failed.*not 3\.11"):
        await objects.mount_get_or_create(_request())


async def test_without_a_mirror_or_with_a_failing_one_the_error_says_so(
    mirror: Mirror, store: SqliteStore, tmp_path: Path
) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs")
    with pytest.raises(NotFound, match=r"Python 3\.11\.5 .*not reachable.*set BERTH_PYTHON_MIRROR"):
        await ObjectService(store, blobs, Clock()).mount_get_or_create(_request())

    url = standalone_url(mirror.url, "3.11")  # nothing published: 404
    with pytest.raises(NotFound, match=rf"not reachable.*BERTH_PYTHON_MIRROR\) failed: {url}: HTTP Error 404"):
        await ObjectService(store, blobs, Clock(), mirror.url).mount_get_or_create(_request())

    name = Path(url).name
    (mirror.root / name).write_bytes(_archive("3.11.2"))
    (mirror.root / f"{name}.sha256").write_text("0" * 64 + "\n")
    with pytest.raises(NotFound, match=r"does not match its \.sha256"):
        await ObjectService(store, blobs, Clock(), mirror.url).mount_get_or_create(_request())
    assert not list((tmp_path / "blobs" / "tmp").iterdir())
