"""Pure logic of registry pulls: reference parsing, which registries skip TLS, credentials from the
registry Secret, skopeo errors turned into messages, and finding `python` in a layered image."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from modal_proto import api_pb2

from berth.pythons import standalone_python_unavailable
from berth.worker.layers import ImageManifest
from berth.worker.registry import (
    ImageRef,
    PullFailed,
    RegistryAuth,
    credentials,
    explain,
    is_insecure,
    parse_ref,
    python_on_path,
    require_python,
)

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@pytest.mark.parametrize(
    ("tag", "reference", "registry"),
    [
        ("python:3.11-slim", "docker.io/library/python:3.11-slim", "docker.io"),
        ("ubuntu", "docker.io/library/ubuntu:latest", "docker.io"),
        ("org/app:1", "docker.io/org/app:1", "docker.io"),
        ("127.0.0.1:5000/berth-test/py:1", "127.0.0.1:5000/berth-test/py:1", "127.0.0.1:5000"),
        ("localhost/app", "localhost/app:latest", "localhost"),
        ("ghcr.io/o/a@sha256:" + "a" * 64, "ghcr.io/o/a@sha256:" + "a" * 64, "ghcr.io"),
        ("nvcr.io/nvidia/pytorch:22.12-py3", "nvcr.io/nvidia/pytorch:22.12-py3", "nvcr.io"),
    ],
)
def test_references_are_normalised_like_docker(tag: str, reference: str, registry: str) -> None:
    ref = parse_ref(tag)
    assert ref.reference == reference
    assert ref.registry == registry


def test_loopback_and_listed_registries_skip_tls_verification() -> None:
    assert is_insecure("127.0.0.1:5000") and is_insecure("localhost:5000") and is_insecure("[::1]:5000")
    assert is_insecure("127.0.0.2")
    assert not is_insecure("ghcr.io") and not is_insecure("docker.io")
    assert is_insecure("registry.lan:5000", ("registry.lan",))
    assert is_insecure("registry.lan:5000", ("registry.lan:5000",))
    assert not is_insecure("registry.lan:5001", ("registry.lan:5000",))


def test_credentials_come_from_the_registry_secret() -> None:
    ref = ImageRef("ghcr.io", "o/a", "1")
    static = api_pb2.REGISTRY_AUTH_TYPE_STATIC_CREDS
    assert credentials(None, ref) is None
    pair = {"REGISTRY_USERNAME": "u", "REGISTRY_PASSWORD": "p"}
    assert credentials(RegistryAuth(static, pair), ref) == ("u", "p")
    inferred = RegistryAuth(api_pb2.REGISTRY_AUTH_TYPE_UNSPECIFIED, pair)
    assert credentials(inferred, ref) == ("u", "p")
    gcp = RegistryAuth(api_pb2.REGISTRY_AUTH_TYPE_GCP, {"SERVICE_ACCOUNT_JSON": "{}"})
    assert credentials(gcp, ref) == ("_json_key", "{}")
    with pytest.raises(PullFailed, match="AWS ECR"):
        credentials(RegistryAuth(api_pb2.REGISTRY_AUTH_TYPE_AWS, {"AWS_REGION": "x"}), ref)
    with pytest.raises(PullFailed, match="REGISTRY_PASSWORD"):
        credentials(RegistryAuth(static, {"REGISTRY_USERNAME": "u"}), ref)


def test_skopeo_errors_become_messages_that_name_the_registry() -> None:
    ref = parse_ref("ghcr.io/o/a:1")

    def msg(err: str, creds: bool = False) -> str:
        return explain(ref, f'time="x" level=fatal msg="{err}"', with_credentials=creds, ca_bundle=Path("/ca.crt"))

    assert "not found" in msg("reading manifest 1 in ghcr.io/o/a: manifest unknown: manifest unknown")
    assert "refused access" in msg("reading manifest 1 in ghcr.io/o/a: unauthorized: authentication required")
    assert "refused the credentials" in msg("unauthorized: authentication required", creds=True)
    assert "BERTH_INSECURE_REGISTRIES" in msg("http: server gave HTTP response to HTTPS client")
    assert "/ca.crt" in msg("x509: certificate signed by unknown authority")
    unreachable = msg("pinging container registry ghcr.io: dial tcp: lookup ghcr.io: no such host")
    assert "ghcr.io is not reachable" in unreachable and "no such host" in unreachable
    assert "docker.io (Docker Hub) is not reachable" in explain(
        parse_ref("python:3.11"), "dial tcp: i/o timeout", with_credentials=False, ca_bundle=None
    )


def test_add_python_mount_names_its_version() -> None:
    message = standalone_python_unavailable("python-build-standalone.20230826.3.11.5-gnu")
    assert message is not None
    assert "Python 3.11.5" in message and "add_python='3.11'" in message and "not reachable" in message
    assert standalone_python_unavailable("my-mount") is None


def _layer(root: Path, files: dict[str, str]) -> str:
    for path, target in files.items():
        p = root / path.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        if target.startswith("->"):
            p.symlink_to(target[2:])
        else:
            p.write_text(target)
    return str(root)


def test_python_is_found_through_symlinks_and_versioned_by_its_headers(tmp_path: Path) -> None:
    official = _layer(
        tmp_path / "a",
        {
            "/usr/local/bin/python": "->python3",
            "/usr/local/bin/python3": "->python3.12",
            "/usr/local/bin/python3.12": "elf",
            "/usr/local/include/python3.12/patchlevel.h": '#define PY_VERSION      "3.12.7"\n',
        },
    )
    assert python_on_path([official], PATH) == "3.12.7"
    merged_usr = _layer(
        tmp_path / "b", {"/bin": "->usr/bin", "/usr/bin/python": "->/usr/bin/python3.11", "/usr/bin/python3.11": "elf"}
    )
    assert python_on_path([merged_usr], "/bin") == "3.11"
    assert python_on_path([_layer(tmp_path / "c", {"/usr/bin/python3": "->python3.11"})], PATH) == ""
    assert python_on_path([_layer(tmp_path / "d", {"/usr/bin/python": "->python3.11"})], PATH) == ""  # dangling


def test_an_image_without_python_is_refused_with_a_hint(tmp_path: Path) -> None:
    only3 = _layer(tmp_path / "a", {"/usr/bin/python3": "->python3.11", "/usr/bin/python3.11": "elf"})
    manifest = ImageManifest("", only3, env={"PATH": PATH})
    with pytest.raises(PullFailed, match="python3 but no `python`"):
        require_python(manifest, "ex/img:1")
    empty = ImageManifest("", _layer(tmp_path / "b", {"/etc/os-release": "x"}), env={"PATH": PATH})
    with pytest.raises(PullFailed, match="add_python"):
        require_python(empty, "ex/img:1")
    # A layer on top that installs python makes it pass.
    top = _layer(tmp_path / "c", {"/usr/local/bin/python": "->/usr/bin/python3.11"})
    assert require_python(ImageManifest("", only3, [top], env={"PATH": PATH}), "ex/img:1") == "3.11"


@pytest.mark.skipif(os.geteuid() != 0, reason="making a whiteout device needs root")
def test_an_overlay_whiteout_hides_python(tmp_path: Path) -> None:
    below = _layer(tmp_path / "below", {"/usr/bin/python": "->python3.11"})
    above = tmp_path / "above" / "usr" / "bin"
    above.mkdir(parents=True)
    os.mknod(above / "python", 0o600 | 0o020000, 0)  # char device 0/0: overlayfs's "deleted"
    assert python_on_path([str(tmp_path / "above"), below], PATH) == ""
