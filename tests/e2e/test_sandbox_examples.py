"""The public sandbox examples of modal-examples, unmodified, against Berth on crun: the stateful code
interpreter (an exec's stdin and line-buffered stdout) and the Jupyter server reached through an
`encrypted_ports` tunnel from the host with the standard library, which trusts Berth's CA through
`berth trust` (SSL_CERT_FILE). Their code is read from the modal-examples mirror at test time (see
tests/e2e/test_web_examples.py); the tests skip where the mirror is absent."""

from __future__ import annotations

import functools
import glob
import hashlib
import http.server
import io
import shlex
import subprocess
import sys
import tarfile
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import BIN, BerthServer, Run, last_json, python, sdk, start_server, stop_server
from tests.e2e.test_web_examples import _example


def _run_example(server: BerthServer, root: Path, path: str, env: dict[str, str] | None = None) -> Run:
    """`python PATH` in the folder the example was copied to, as the acceptance README runs it."""
    _example(root, path)
    proc = subprocess.run(
        [sys.executable, path], cwd=root, env=env or server.env, capture_output=True, text=True, timeout=900
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


def _trust_env(server: BerthServer) -> dict[str, str]:
    """The client's environment with `berth trust`'s export applied, as a user's shell would have it."""
    out = subprocess.run(
        [BIN / "berth", "trust", "--data-dir", server.data_dir], capture_output=True, text=True, check=True
    ).stdout
    env = server.env
    for assignment in shlex.split(out.strip().removeprefix("export ")):
        key, _, value = assignment.partition("=")
        env[key] = value
    return env


def test_simple_code_interpreter_example(berth_oci: BerthServer, tmp_path: Path) -> None:
    run = _run_example(berth_oci, tmp_path, "13_sandboxes/simple_code_interpreter.py")
    assert run.returncode == 0, run.output
    assert run.stdout.splitlines()[:3] == ["hello, world!", "The result is: 15", "Attempting to divide by zero..."]
    assert "Execution Error: division by zero" in run.stderr


def test_berth_trust_lets_the_standard_library_reach_an_encrypted_port(berth_oci: BerthServer) -> None:
    code = textwrap.dedent(
        """
        import json, ssl, time, urllib.request, modal
        app = modal.App.lookup("sb-trust", create_if_missing=True)
        serve = "mkdir -p /srv && echo served in the sandbox > /srv/page && exec python3 -m http.server 8000 -d /srv"
        sb = modal.Sandbox.create("sh", "-c", serve, app=app, image=modal.Image.debian_slim(), encrypted_ports=[8000])
        url = sb.tunnels()[8000].url
        body, error = None, None
        for _ in range(100):
            try:
                body = urllib.request.urlopen(url + "/page", timeout=5).read().decode()
                break
            except ssl.SSLError as exc:  # not trusted: no retry will change that
                error = type(exc).__name__ + ": " + str(exc)
                break
            except OSError as exc:  # the server in the sandbox is not listening yet
                error = type(exc).__name__ + ": " + str(exc)
                time.sleep(0.2)
        sb.terminate()
        print(json.dumps({"url": url, "body": body, "error": error}))
        """
    )
    untrusted = last_json(sdk(berth_oci, code))
    assert untrusted["url"].startswith("https://") and untrusted["body"] is None
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted["error"]
    env = _trust_env(berth_oci)
    assert Path(env["SSL_CERT_FILE"]).read_bytes().endswith((berth_oci.data_dir / "tls" / "ca.pem").read_bytes())
    run = python(berth_oci, "-c", code, env=env)
    assert run.returncode == 0, run.output
    trusted = last_json(run.stdout)
    assert trusted["body"] == "served in the sandbox\n", trusted


@pytest.fixture
def python312_mirror(tmp_path: Path) -> Iterator[str]:
    """BERTH_PYTHON_MIRROR on loopback with a python-build-standalone-shaped archive of Python 3.12, which
    the Jupyter example's `debian_slim(python_version="3.12")` needs and Debian lacks. No real
    python-build-standalone download is reachable here, so it is made from the host's pyenv 3.12 (a
    Debian bookworm build, as the image is), with its interpreter's RUNPATH pointed at $ORIGIN/../lib."""
    found = sorted(glob.glob("/root/.pyenv/versions/3.12.*"))
    if not found:
        pytest.skip("no Python 3.12 on this host to make a python-build-standalone archive from (pyenv)")
    prefix = Path(found[-1])
    root = tmp_path / "mirror"
    root.mkdir()
    name = "cpython-3.12-x86_64-unknown-linux-gnu-install_only.tar.gz"
    runpath = str(prefix / "lib").encode() + b"\0"

    def skip_tests(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        return None if "/python3.12/test/" in info.name + "/" or "__pycache__" in info.name else info

    with tarfile.open(root / name, "w:gz", compresslevel=1) as tar:
        for sub in ("lib", "include"):
            tar.add(prefix / sub, f"python/{sub}", filter=skip_tests)
        binary = (prefix / "bin" / "python3.12").read_bytes()
        if binary.count(runpath) != 1:
            pytest.skip(f"{prefix}/bin/python3.12 does not have the RUNPATH this fixture rewrites")
        binary = binary.replace(runpath, b"$ORIGIN/../lib".ljust(len(runpath), b"\0"))
        info = tarfile.TarInfo("python/bin/python3.12")
        info.size, info.mode = len(binary), 0o755
        tar.addfile(info, io.BytesIO(binary))
        # pip's entry points, relocatable as python-build-standalone's are (pyenv's name its own prefix)
        pip = b'#!/bin/sh\nexec "$(dirname -- "$(realpath -- "$0")")/python3.12" -m pip "$@"\n'
        for script in ("pip3", "pip3.12"):
            info = tarfile.TarInfo(f"python/bin/{script}")
            info.size, info.mode = len(pip), 0o755
            tar.addfile(info, io.BytesIO(pip))
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


@pytest.mark.timeout(1500)  # the first run builds a Debian base and installs Jupyter from PyPI
def test_jupyter_sandbox_example(python312_mirror: str, tmp_path: Path) -> None:
    server = start_server(
        tmp_path / "data", extra_env={"BERTH_PYTHON_MIRROR": python312_mirror}, extra_args=["--runtime", "crun"]
    )
    try:
        run = _run_example(server, tmp_path, "13_sandboxes/jupyter_sandbox.py", env=_trust_env(server))
        assert run.returncode == 0, run.output
        lines = run.stdout.splitlines()
        assert any(line.startswith("🏖️  Sandbox ID: sb-") for line in lines), run.output
        assert any(line.startswith("🏖️  Jupyter notebook is running at: https://") for line in lines), run.output
        assert "🏖️  Jupyter is up and running!" in lines, run.output  # it exits 0 on a timeout too
    finally:
        stop_server(server)  # the example leaves its sandbox running: the server's shutdown ends it
