"""`modal.Image.from_registry` against real registries: Debian's docker-registry (the CNCF distribution
registry) on loopback, once open and once behind htpasswd auth, holding images made here with umoci
from the debian_slim base rootfs. The stock client builds and runs functions on the pulled images."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import http.server
import io
import os
import re
import shutil
import socket
import subprocess
import tarfile
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import BerthServer, Run, modal, start_server, stop_server

BASE = "bookworm-py3.11"
EPOCH = 1700000000
CREATED = "2023-11-14T22:13:20Z"
USER, PASSWORD, WRONG = "berth", "s3cret-registry-pw", "not-the-password-7f3a"
# Parts of the base rootfs a test image does not need (keeps the push and pull fast).
EXCLUDE = ["./usr/share/doc", "./usr/share/man", "./usr/share/locale", "./usr/share/info", "./var/lib/apt/lists"]


def _ensure_docker_registry() -> str:
    """The registry binary; installed from Debian when missing (`make test-host` does the same)."""
    found = shutil.which("docker-registry")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-q", "docker-registry"]
        if subprocess.run(install, env=env, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
            subprocess.run(install, env=env, capture_output=True)
        found = shutil.which("docker-registry")
    if found is None:
        pytest.fail("docker-registry is not installed: run `make test-host` (apt-get install docker-registry)")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Registry:
    address: str
    proc: subprocess.Popen[bytes]
    log: Path


def _start_registry(binary: str, root: Path, htpasswd: Path | None = None) -> Registry:
    root.mkdir(parents=True)
    port = _free_port()
    auth = f"auth:\n  htpasswd:\n    realm: berth-test\n    path: {htpasswd}\n" if htpasswd else ""
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: info\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root / 'storage'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n{auth}"
    )
    log = root / "registry.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([binary, "serve", str(config)], stdout=out, stderr=out)
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1)
            return Registry(f"127.0.0.1:{port}", proc, log)
        except urllib.error.HTTPError:
            return Registry(f"127.0.0.1:{port}", proc, log)  # 401: up, behind auth
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.1)
    proc.kill()
    proc.wait()
    raise RuntimeError(f"docker-registry did not start: {log.read_text()}")


def _stop(registry: Registry) -> None:
    registry.proc.terminate()
    try:
        registry.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        registry.proc.kill()
        registry.proc.wait()


def _sh(*argv: str | Path) -> None:
    out = subprocess.run([str(a) for a in argv], capture_output=True, text=True)
    assert out.returncode == 0, f"{argv}: {out.stdout}{out.stderr}"


def _base_rootfs() -> Path:
    """The debian_slim base rootfs from the machine's image cache, built now if this machine has none."""
    from berth.worker.rootfs import BaseRequest, RootfsCache

    cache = RootfsCache(Path(os.environ.get("BERTH_IMAGE_CACHE", "/var/cache/berth")))
    return asyncio.run(cache.ensure_base(BaseRequest("bookworm", "3.11"), lambda _: None))


@dataclass
class Images:
    layout: Path  # an OCI layout holding py-v1, py-v2 (v1 + a new marker), nopy and debian-nopy


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Images:
    """Test images with fixed timestamps, so their digests are the same every session: the machine-wide
    layer cache then holds one copy of each instead of a new one per test run."""
    if os.geteuid() != 0:
        pytest.skip("building images with umoci and running them on crun needs root")
    tmp = tmp_path_factory.mktemp("registry-images")
    stage = tmp / "stage"
    stage.mkdir()
    tar = subprocess.run(
        ["tar", "-C", str(_base_rootfs()), *(f"--exclude={e}" for e in EXCLUDE), "-cf", "-", "."],
        stdout=subprocess.PIPE,
        check=True,
    )
    subprocess.run(["tar", "-C", str(stage), "-xf", "-"], input=tar.stdout, check=True)
    _write(stage / "berth-marker.txt", "marker-v1\n")
    layout = tmp / "oci"
    _sh("umoci", "init", "--layout", layout)
    _umoci("new", f"{layout}:py-v1")
    _umoci("insert", f"{layout}:py-v1", stage, "/")
    _umoci("config", f"{layout}:py-v1", "--config.env", "BERTH_IMAGE_ENV=from-registry")
    v2 = tmp / "v2"
    v2.mkdir()
    _write(v2 / "berth-marker.txt", "marker-v2\n")
    _umoci("insert", f"{layout}:py-v1", "--tag", "py-v2", v2 / "berth-marker.txt", "/berth-marker.txt")
    nopy = tmp / "nopy"
    nopy.mkdir()
    _write(nopy / "berth-marker.txt", "no python here\n")
    _umoci("new", f"{layout}:nopy")
    _umoci("insert", f"{layout}:nopy", nopy, "/")
    # py-v1 with its Python deleted (whiteout layers): Debian with libc and a shell, but no `python` on PATH.
    _sh("umoci", "tag", "--image", f"{layout}:py-v1", "debian-nopy")
    for gone in ("/usr/bin/python", "/usr/bin/python3", "/usr/bin/python3.11", "/usr/lib/python3.11"):
        _umoci("insert", f"{layout}:debian-nopy", "--whiteout", gone)
    shutil.rmtree(stage)
    return Images(layout)


def _write(path: Path, text: str) -> None:
    path.write_text(text)
    for p in (path, path.parent):
        os.utime(p, (EPOCH, EPOCH))


def _umoci(command: str, image: str, *args: str | Path) -> None:
    """umoci with fixed creation times (`new` takes none; a `config --created` right after sets them)."""
    _sh("umoci", command, "--image", image, *([] if command == "new" else ["--history.created", CREATED]), *args)
    if command == "new":
        _sh("umoci", "config", "--image", image, "--created", CREATED, "--history.created", CREATED)


def _push(images: Images, name: str, dest: str, creds: str | None = None) -> None:
    argv = ["skopeo", "copy", "--dest-tls-verify=false", *(["--dest-creds", creds] if creds else [])]
    _sh(*argv, f"oci:{images.layout}:{name}", f"docker://{dest}")


@pytest.fixture(scope="module")
def registry(images: Images, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An open registry on loopback with berth-test/py:1, berth-test/py:moving and berth-test/nopy:1."""
    reg = _start_registry(_ensure_docker_registry(), tmp_path_factory.mktemp("registry") / "open")
    try:
        _push(images, "py-v1", f"{reg.address}/berth-test/py:1")
        _push(images, "nopy", f"{reg.address}/berth-test/nopy:1")
        yield reg.address
    finally:
        _stop(reg)


@pytest.fixture(scope="module")
def private_registry(images: Images, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A registry that wants a username and password (htpasswd, bcrypt) for everything."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # deprecated, but in 3.11; the registry's htpasswd file wants bcrypt, which it makes

    root = tmp_path_factory.mktemp("registry-private")
    htpasswd = root / "htpasswd"
    htpasswd.write_text(f"{USER}:{crypt.crypt(PASSWORD, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))}\n")
    reg = _start_registry(_ensure_docker_registry(), root / "reg", htpasswd)
    try:
        _push(images, "py-v1", f"{reg.address}/team/private:1", creds=f"{USER}:{PASSWORD}")
        yield reg.address
    finally:
        _stop(reg)


def _run(berth: BerthServer, image: str, **env: str) -> Run:
    return modal(berth, "run", "registry_app.py", env={"BERTH_TEST_IMAGE": image, **env}, timeout=600)


def _digest(run: Run) -> str:
    """The manifest digest the build log says the tag resolved to."""
    found = re.findall(r"(sha256:[0-9a-f]{64})\)? (?:\(already pulled\)|from )", run.output)
    assert found, run.output
    return str(found[-1])


def _result(run: Run) -> str:
    lines = [line for line in run.stdout.splitlines() if line.startswith("result=")]
    assert run.returncode == 0 and lines, run.output
    return lines[-1]


def test_pulled_image_runs_the_function_with_its_files_env_and_python(registry: str, berth_oci: BerthServer) -> None:
    run = _run(berth_oci, f"{registry}/berth-test/py:1")
    result = _result(run)
    assert "'marker': 'marker-v1'" in result  # a file from the pulled image
    assert "'layer': 'layered-on-top'" in result  # the run_commands layer built on top of it
    assert "'env': 'from-registry'" in result  # the image config's Env
    assert "'version': '3.11'" in result
    # Pulled now, or by an earlier session: the test images' digests are the same every time.
    assert f"Pulling {registry}/berth-test/py:1" in run.output or f"FROM {registry}/berth-test/py:1: " in run.output


def test_unchanged_tag_is_not_pulled_again_and_a_moved_tag_is(
    registry: str, images: Images, berth_oci: BerthServer
) -> None:
    tag = f"{registry}/berth-test/py:moving"
    _push(images, "py-v1", tag)
    first = _run(berth_oci, tag)  # pulls, unless py:1 (the same digest) was pulled already
    assert "'marker': 'marker-v1'" in _result(first)
    digest = _digest(first)

    # A forced rebuild asks the registry what the tag points at: the same digest, so no pull.
    again = _run(berth_oci, tag, BERTH_TEST_FORCE="1")
    assert "'marker': 'marker-v1'" in _result(again)
    assert f"{digest} (already pulled)" in again.output
    assert "Pulling" not in again.output

    _push(images, "py-v2", tag)  # the tag moves
    moved = _run(berth_oci, tag, BERTH_TEST_FORCE="1")
    assert "'marker': 'marker-v2'" in _result(moved)
    assert _digest(moved) != digest  # resolved again (and pulled, unless an earlier session has it)


def test_missing_tag_names_the_registry_and_the_tag(registry: str, berth_oci: BerthServer) -> None:
    run = _run(berth_oci, f"{registry}/berth-test/py:no-such-tag")
    assert run.returncode != 0
    assert f"Image {registry}/berth-test/py:no-such-tag not found" in run.output
    assert f"the registry {registry} has no such repository or tag (manifest unknown)" in run.output


def test_image_without_python_fails_with_a_clear_error(registry: str, berth_oci: BerthServer) -> None:
    run = _run(berth_oci, f"{registry}/berth-test/nopy:1")
    assert run.returncode != 0
    assert f"The image {registry}/berth-test/nopy:1 has no `python` on PATH" in run.output
    assert "add_python" in run.output


def test_add_python_says_python_build_standalone_is_unreachable(registry: str, berth_oci: BerthServer) -> None:
    started = time.monotonic()
    run = _run(berth_oci, f"{registry}/berth-test/nopy:1", BERTH_TEST_ADD_PYTHON="3.11")
    assert run.returncode != 0
    assert "python-build-standalone" in run.output and "not reachable" in run.output
    assert "Python 3.11." in run.output  # the exact version add_python wanted
    assert time.monotonic() - started < 120


@pytest.fixture
def python_mirror(tmp_path: Path) -> Iterator[str]:
    """BERTH_PYTHON_MIRROR on loopback, holding a python-build-standalone-shaped install_only archive of
    Python 3.11 made from the debian_slim base (no real python-build-standalone download is reachable):
    Debian's interpreter and stdlib under python/, which CPython finds relative to its own location."""
    from berth.pythons import standalone_url
    from berth.worker.rootfs import python_version_of

    rootfs = _base_rootfs()
    version = python_version_of(rootfs)
    assert version.startswith("3.11."), version
    root = tmp_path / "mirror"
    root.mkdir()
    name = Path(standalone_url(str(root), "3.11")).name
    with tarfile.open(root / name, "w:gz", compresslevel=1) as tar:
        tar.add(rootfs / "usr/bin/python3.11", "python/bin/python3.11")
        for link, target in (("python3", "python3.11"), ("python", "python3")):
            info = tarfile.TarInfo(f"python/bin/{link}")
            info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
            tar.addfile(info)
        tar.add(rootfs / "usr/lib/python3.11", "python/lib/python3.11")  # links stay links
        header = f'#define PY_VERSION              "{version}"\n'.encode()
        info = tarfile.TarInfo("python/include/python3.11/patchlevel.h")
        info.size, info.mode = len(header), 0o644
        tar.addfile(info, io.BytesIO(header))
    sha = hashlib.sha256((root / name).read_bytes()).hexdigest()
    (root / f"{name}.sha256").write_text(f"{sha}  {name}\n")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_add_python_comes_from_the_python_mirror(
    registry: str, images: Images, python_mirror: str, tmp_path: Path
) -> None:
    image = f"{registry}/berth-test/debian-nopy:1"
    _push(images, "debian-nopy", image)
    server = start_server(
        tmp_path / "data", extra_env={"BERTH_PYTHON_MIRROR": python_mirror}, extra_args=["--runtime", "crun"]
    )
    try:
        run = _run(server, image, BERTH_TEST_ADD_PYTHON="3.11")
        result = _result(run)
        assert "'version': '3.11'" in result
        assert "'python': '/usr/local/bin/python" in result  # the mount's, not Debian's (whited out)
        assert "'marker': 'marker-v1'" in result and "'layer': 'layered-on-top'" in result
    finally:
        stop_server(server)
    log = server.log_path.read_text()
    assert "cpython-3.11-" in log and python_mirror in log  # which archive
    assert "Python 3.11." in log and "patch level" in log  # which version, and that it is not 3.11.5


def test_private_registry_uses_the_secrets_credentials(private_registry: str, berth_oci: BerthServer) -> None:
    image = f"{private_registry}/team/private:1"
    anonymous = _run(berth_oci, image)
    assert anonymous.returncode != 0
    assert f"The registry {private_registry} refused access to {image}" in anonymous.output
    assert "REGISTRY_USERNAME" in anonymous.output

    wrong = _run(berth_oci, image, BERTH_TEST_REGISTRY_USER=USER, BERTH_TEST_REGISTRY_PASSWORD=WRONG)
    assert wrong.returncode != 0
    assert f"The registry {private_registry} refused the credentials from the registry Secret" in wrong.output
    assert WRONG not in wrong.output  # the password is not echoed

    right = _run(berth_oci, image, BERTH_TEST_REGISTRY_USER=USER, BERTH_TEST_REGISTRY_PASSWORD=PASSWORD)
    assert "'marker': 'marker-v1'" in _result(right)
