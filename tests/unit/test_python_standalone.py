"""Pythons Debian does not carry come from a python-build-standalone archive on the operator's mirror
(BERTH_PYTHON_MIRROR). The mirror here is a real HTTP server on loopback serving archives laid out like
python-build-standalone's install_only ones (no CPython download is reachable from CI)."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import http.server
import io
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from berth.errors import FailedPrecondition
from berth.pythons import standalone_url
from berth.worker.rootfs import BaseRequest, RootfsCache, python_version_of, resolve_base


def _archive(version: str) -> bytes:
    series = ".".join(version.split(".")[:2])
    files = {
        f"python/bin/python{series}": b"#!/bin/sh\n",
        "python/bin/pip3": b"#!/bin/sh\n",
        f"python/lib/python{series}/os.py": b"",
        f"python/include/python{series}/patchlevel.h": f'#define PY_VERSION      "{version}"\n'.encode(),
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "mirror"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/pbs", root
    server.shutdown()
    server.server_close()


def _publish(root: Path, series: str, data: bytes, sha: str | None = None) -> None:
    name = Path(standalone_url(str(root / "pbs"), series)).name
    (root / "pbs").mkdir(exist_ok=True)
    (root / "pbs" / name).write_bytes(data)
    if sha is not None:
        (root / "pbs" / f"{name}.sha256").write_text(f"{sha}  {name}\n")


def _install(url: str, tmp: Path, series: str) -> tuple[str, Path]:
    rootfs = tmp / "rootfs"
    rootfs.mkdir(exist_ok=True)
    version = asyncio.run(RootfsCache(tmp / "cache", url).install_standalone(series, rootfs, lambda _: None))
    return version, rootfs


def test_other_pythons_need_a_mirror_and_are_never_swapped() -> None:
    with pytest.raises(
        FailedPrecondition, match=r"Python 3\.12 is not available.*3\.11 \(bookworm\).*BERTH_PYTHON_MIRROR"
    ):
        resolve_base(BaseRequest("bookworm", "3.12"))
    assert resolve_base(BaseRequest("bookworm", "3.12"), "http://m") == BaseRequest("bookworm", "3.12", True)
    assert resolve_base(BaseRequest("bullseye", "3.10"), "http://m") == BaseRequest("bookworm", "3.10", True)
    # a series Debian carries still comes from Debian, mirror or not
    assert resolve_base(BaseRequest("bookworm", "3.13"), "http://m") == BaseRequest("trixie", "3.13")


def test_mirror_url_is_a_folder_or_a_template() -> None:
    assert standalone_url("http://m/pbs/", "3.12").startswith("http://m/pbs/cpython-3.12-")
    assert standalone_url("http://m/{version}/py.tgz", "3.10") == "http://m/3.10/py.tgz"


def test_archive_from_the_mirror_lands_in_usr_local(mirror: tuple[str, Path], tmp_path: Path) -> None:
    url, root = mirror
    data = _archive("3.12.7")
    _publish(root, "3.12", data, sha=hashlib.sha256(data).hexdigest())
    version, rootfs = _install(url, tmp_path, "3.12")
    assert version == "3.12.7"
    bin_dir = rootfs / "usr/local/bin"
    assert (bin_dir / "python3").resolve() == (bin_dir / "python3.12").resolve()
    assert (bin_dir / "python").resolve() == (bin_dir / "python3.12").resolve()
    assert (bin_dir / "pip").resolve() == (bin_dir / "pip3").resolve()
    assert python_version_of(rootfs) == "3.12.7"
    assert not list(rootfs.parent.glob("cpython-*"))  # the download is not left behind


def test_a_missing_version_names_what_is_available(mirror: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = mirror
    with pytest.raises(FailedPrecondition, match=r"Python 3\.10 is not available.*404.*3\.11 \(bookworm\), 3\.13"):
        _install(url, tmp_path, "3.10")


def test_a_checksum_mismatch_is_refused(mirror: tuple[str, Path], tmp_path: Path) -> None:
    url, root = mirror
    _publish(root, "3.12", _archive("3.12.7"), sha="0" * 64)
    with pytest.raises(FailedPrecondition, match="does not match its .sha256"):
        _install(url, tmp_path, "3.12")


def test_an_archive_of_another_version_is_refused(mirror: tuple[str, Path], tmp_path: Path) -> None:
    url, root = mirror
    _publish(root, "3.12", _archive("3.11.9"))
    with pytest.raises(FailedPrecondition, match=r"holds Python \(none found\), not 3\.12"):
        _install(url, tmp_path, "3.12")
