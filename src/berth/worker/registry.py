"""`Image.from_registry`: pull an image from a container registry with skopeo and unpack it with umoci.

The tag is resolved to its manifest digest first (`skopeo inspect --raw`, one small request), and the
unpacked root filesystem is cached machine-wide under that digest: an unchanged tag costs one request,
a tag that moved is pulled again. The copy is made by digest, so what is cached is what was inspected.

Registries on loopback (localhost, 127.0.0.0/8, ::1) and those in `BERTH_INSECURE_REGISTRIES` are
spoken to without TLS verification (they usually serve plain HTTP); every other registry must present
a certificate the host CA bundle trusts. Credentials come from the Secret given to `from_registry`
(`REGISTRY_USERNAME`/`REGISTRY_PASSWORD`, or `SERVICE_ACCOUNT_JSON` for Google registries) and reach
skopeo in a 0600 auth file, never on its command line.

Modal expects a registry image to have `python` on PATH unless `add_python=` is used; an image
without one fails its build with an error that says so."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ipaddress
import json
import os
import posixpath
import re
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from modal_proto import api_pb2

from berth.worker.layers import ImageManifest, LayerStore, content_key
from berth.worker.rootfs import BASE_ENV, locked

LogFn = Callable[[str], None]

DOCKER_HUB = "docker.io"
_INSPECT_TIMEOUT = "60s"
_COPY_TIMEOUT = "30m"


class PullFailed(Exception):
    """The image could not be pulled; the message names the registry and what to do."""


@dataclass(frozen=True)
class ImageRef:
    """A parsed image reference, normalised the way Docker does (`python:3.11` → docker.io/library/python:3.11)."""

    registry: str  # host[:port]
    repository: str
    tag: str = ""
    digest: str = ""

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    @property
    def reference(self) -> str:
        if self.digest:
            return f"{self.name}@{self.digest}"
        return f"{self.name}:{self.tag or 'latest'}"

    @property
    def display_registry(self) -> str:
        return "docker.io (Docker Hub)" if self.registry == DOCKER_HUB else self.registry

    @property
    def host(self) -> str:
        if self.registry.startswith("["):  # [::1]:5000
            return self.registry[1:].partition("]")[0]
        return self.registry.rsplit(":", 1)[0] if self.registry.count(":") == 1 else self.registry


def parse_ref(tag: str) -> ImageRef:
    ref = tag.strip()
    if not ref or any(c.isspace() for c in ref):
        raise PullFailed(f"Invalid image reference {tag!r}")
    rest, _, digest = ref.partition("@")
    first, slash, remainder = rest.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        registry, path = first, remainder
    else:
        registry, path = DOCKER_HUB, rest
    name, _, tag_part = path.rpartition(":") if ":" in path.rsplit("/", 1)[-1] else (path, "", "")
    if registry in (DOCKER_HUB, "index.docker.io", "registry-1.docker.io"):
        registry = DOCKER_HUB
        if "/" not in name:
            name = f"library/{name}"
    if not name or name != name.lower():
        raise PullFailed(f"Invalid image reference {tag!r}: the repository name must be lowercase")
    return ImageRef(registry, name, tag_part, digest)


def is_insecure(registry: str, extra: tuple[str, ...] = ()) -> bool:
    """Whether to skip TLS verification: loopback registries and those listed in BERTH_INSECURE_REGISTRIES."""
    ref = ImageRef(registry, "x")
    if ref.host == "localhost" or registry in extra or ref.host in extra:
        return True
    try:
        return ipaddress.ip_address(ref.host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class RegistryAuth:
    """The Image's `image_registry_config`: how to authenticate, and the Secret's values."""

    auth_type: int = api_pb2.REGISTRY_AUTH_TYPE_UNSPECIFIED
    env: dict[str, str] = field(default_factory=dict)


def credentials(auth: RegistryAuth | None, ref: ImageRef) -> tuple[str, str] | None:
    """(username, password) for skopeo, or None for an anonymous pull."""
    if auth is None or not auth.env:
        return None
    env, kind = auth.env, auth.auth_type
    if kind == api_pb2.REGISTRY_AUTH_TYPE_UNSPECIFIED:  # an older client or a hand-made config: go by the keys
        if {"REGISTRY_USERNAME", "REGISTRY_PASSWORD"} <= env.keys():
            kind = api_pb2.REGISTRY_AUTH_TYPE_STATIC_CREDS
        elif "SERVICE_ACCOUNT_JSON" in env:
            kind = api_pb2.REGISTRY_AUTH_TYPE_GCP
        elif "AWS_REGION" in env:
            kind = api_pb2.REGISTRY_AUTH_TYPE_AWS
    if kind == api_pb2.REGISTRY_AUTH_TYPE_STATIC_CREDS:
        if not {"REGISTRY_USERNAME", "REGISTRY_PASSWORD"} <= env.keys():
            raise PullFailed(
                f"Cannot pull {ref.reference}: the registry Secret needs REGISTRY_USERNAME and REGISTRY_PASSWORD"
            )
        return env["REGISTRY_USERNAME"], env["REGISTRY_PASSWORD"]
    if kind == api_pb2.REGISTRY_AUTH_TYPE_GCP:
        # Artifact Registry and gcr.io take a service account key as the password of the user _json_key.
        if "SERVICE_ACCOUNT_JSON" not in env:
            raise PullFailed(f"Cannot pull {ref.reference}: the registry Secret needs SERVICE_ACCOUNT_JSON")
        return "_json_key", env["SERVICE_ACCOUNT_JSON"]
    if kind == api_pb2.REGISTRY_AUTH_TYPE_AWS:
        raise PullFailed(
            f"Cannot pull {ref.reference}: AWS ECR authentication (AWS_* keys) is not supported by Berth. "
            "Get a token with `aws ecr get-login-password` and give it as REGISTRY_PASSWORD "
            "(with REGISTRY_USERNAME=AWS) in the Secret instead."
        )
    raise PullFailed(
        f"Cannot pull {ref.reference}: the registry Secret has none of REGISTRY_USERNAME and REGISTRY_PASSWORD "
        "or SERVICE_ACCOUNT_JSON"
    )


def explain(ref: ImageRef, output: str, *, with_credentials: bool, ca_bundle: Path | None) -> str:
    """Turn skopeo's error output into a message that names the registry and says what to do."""
    reg = ref.display_registry
    detail = _last_error(output)
    low = output.lower()
    if "manifest unknown" in low or "name unknown" in low or "repository name not known" in low:
        return (
            f"Image {ref.reference} not found: the registry {reg} has no such repository or tag "
            f"(manifest unknown). Check the name and tag (`skopeo list-tags docker://{ref.name}` lists the tags)."
        )
    if "unauthorized" in low or "authentication required" in low or "access to the resource is denied" in low:
        if with_credentials:
            return (
                f"The registry {reg} refused the credentials from the registry Secret for {ref.reference} "
                f"({detail}). Check REGISTRY_USERNAME and REGISTRY_PASSWORD and that the user may pull this image."
            )
        return (
            f"The registry {reg} refused access to {ref.reference} ({detail}). If the image is private, pass "
            "secret=modal.Secret.from_name(...) holding REGISTRY_USERNAME and REGISTRY_PASSWORD to from_registry; "
            "otherwise check the image name."
        )
    if "http response to https client" in low:
        return (
            f"Cannot pull {ref.reference}: the registry {reg} speaks plain HTTP, not HTTPS. "
            f"If you trust it, list {ref.registry} in BERTH_INSECURE_REGISTRIES on the Berth server."
        )
    if "x509" in low or "certificate" in low:
        bundle = str(ca_bundle) if ca_bundle else "the system CA store"
        return (
            f"Cannot pull {ref.reference}: the TLS certificate of {reg} is not trusted ({detail}). Add its CA to "
            f"{bundle} (BERTH_CA_BUNDLE), or list {ref.registry} in BERTH_INSECURE_REGISTRIES."
        )
    return (
        f"Cannot pull {ref.reference}: the registry {reg} is not reachable from this machine ({detail}). "
        "Check the registry address and this machine's network, or push the image to a registry it can reach."
    )


def _last_error(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    if not lines:
        return "no output"
    line = lines[-1]
    m = re.search(r'msg="(.*)"', line)
    text = m.group(1).replace('\\"', '"') if m else line
    text = re.sub(r"^Error parsing image name \"[^\"]*\": ", "", text)
    return text[:300]


class RegistryPuller:
    """Pulls registry images into the machine-wide layer cache, keyed by manifest digest."""

    def __init__(
        self, layers: LayerStore, locks: Path, ca_bundle: Path | None, insecure_registries: tuple[str, ...] = ()
    ) -> None:
        self.layers = layers
        self.locks = locks
        self.ca_bundle = ca_bundle
        self.insecure_registries = insecure_registries

    async def pull(self, tag: str, auth: RegistryAuth | None, on_log: LogFn) -> ImageManifest:
        ref = parse_ref(tag)
        if shutil.which("skopeo") is None or shutil.which("umoci") is None:
            raise PullFailed(
                f"Cannot pull {tag} from {ref.display_registry}: skopeo and umoci are not installed "
                "(run `berth doctor --fix` or scripts/setup-host.sh)"
            )
        creds = credentials(auth, ref)
        tmp = self.layers.new_tmp()
        try:
            authfile = self._authfile(tmp, ref, creds)
            digest = await self._resolve(ref, authfile, creds is not None)
            key = content_key("registry", digest)
            found = self.layers.get(key)
            if found is not None:
                on_log(f"=> FROM {tag}: {digest} (already pulled)\n")
            else:

                async def fetch() -> Path:
                    again = self.layers.get(key)
                    if again is not None:
                        return again
                    return await self._fetch(ref, digest, authfile, creds is not None, on_log)

                found = await locked(self.locks / f"pull-{key}", fetch)
        finally:
            self.layers.discard(tmp)
        return manifest_of(found, key)

    def _authfile(self, tmp: Path, ref: ImageRef, creds: tuple[str, str] | None) -> Path | None:
        if creds is None:
            return None
        path = tmp / "auth.json"
        token = base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"auths": {ref.registry: {"auth": token}}}, f)
        return path

    def _tls_flag(self, ref: ImageRef, flag: str) -> list[str]:
        return [f"{flag}=false"] if is_insecure(ref.registry, self.insecure_registries) else []

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.ca_bundle is not None:
            env["SSL_CERT_FILE"] = str(self.ca_bundle)  # skopeo (Go) verifies registries against this bundle
        return env

    def _explain(self, ref: ImageRef, err: bytes, with_creds: bool) -> str:
        return explain(ref, err.decode(errors="replace"), with_credentials=with_creds, ca_bundle=self.ca_bundle)

    async def _resolve(self, ref: ImageRef, authfile: Path | None, with_creds: bool) -> str:
        """The manifest digest the tag points at now."""
        argv = ["skopeo", "--command-timeout", _INSPECT_TIMEOUT, "inspect", "--raw"]
        argv += self._tls_flag(ref, "--tls-verify")
        argv += ["--authfile", str(authfile)] if authfile else []
        argv.append(f"docker://{ref.reference}")
        code, out, err = await _run(argv, self._env())
        if code != 0:
            raise PullFailed(self._explain(ref, err, with_creds))
        if ref.digest:
            return ref.digest
        return "sha256:" + hashlib.sha256(out).hexdigest()

    async def _fetch(self, ref: ImageRef, digest: str, authfile: Path | None, with_creds: bool, on_log: LogFn) -> Path:
        on_log(f"=> Pulling {ref.reference} ({digest}) from {ref.display_registry}\n")
        tmp = self.layers.new_tmp()
        try:
            layout = f"{tmp / 'oci'}:img"
            argv = ["skopeo", "--command-timeout", _COPY_TIMEOUT, "copy", "--retry-times", "2"]
            argv += self._tls_flag(ref, "--src-tls-verify")
            argv += ["--src-authfile", str(authfile)] if authfile else []
            argv += [f"docker://{ref.name}@{digest}", f"oci:{layout}"]
            code, out, err = await _run(argv, self._env())
            on_log(out.decode(errors="replace"))
            if code != 0:
                raise PullFailed(self._explain(ref, err, with_creds))
            config = _image_config(tmp / "oci")
            (tmp / "image-config.json").write_text(json.dumps(config))
            code, out, err = await _run(["umoci", "unpack", "--image", layout, str(tmp / "bundle")], None)
            if code != 0:
                detail = (err or out).decode(errors="replace").strip()[-500:]
                raise PullFailed(f"Cannot unpack {ref.reference} (umoci exit code {code}): {detail}")
            # Only the root filesystem is needed from here on: drop the compressed blobs and umoci's records.
            await asyncio.to_thread(shutil.rmtree, tmp / "oci", True)
            for extra in (tmp / "bundle").glob("*.mtree"):
                extra.unlink()
            return self.layers.commit(content_key("registry", digest), tmp)
        except BaseException:
            await asyncio.to_thread(shutil.rmtree, tmp, True)
            raise


def _image_config(layout: Path) -> dict[str, object]:
    """The OCI image config (Env, WorkingDir, Cmd, ...) of the single image in an OCI layout."""

    def blob(digest: str) -> dict[str, object]:
        algo, _, hexa = digest.partition(":")
        data: dict[str, object] = json.loads((layout / "blobs" / algo / hexa).read_text())
        return data

    index = json.loads((layout / "index.json").read_text())
    manifest = blob(index["manifests"][0]["digest"])
    config = blob(str(manifest["config"]["digest"]))  # type: ignore[index]
    inner = config.get("config") or {}
    return inner if isinstance(inner, dict) else {}


def manifest_of(found: Path, key: str) -> ImageManifest:
    """The manifest of a pulled image: its rootfs as the base, its Env and WorkingDir, and its Python."""
    config: dict[str, object] = {}
    if (found / "image-config.json").exists():
        config = json.loads((found / "image-config.json").read_text())
    env = dict(BASE_ENV)
    for item in config.get("Env") or []:  # type: ignore[attr-defined]
        k, _, v = str(item).partition("=")
        env[k] = v
    workdir = str(config.get("WorkingDir") or "/")
    rootfs = found / "bundle" / "rootfs"
    version = python_on_path([str(rootfs)], env.get("PATH", BASE_ENV["PATH"]))
    return ImageManifest("", str(rootfs), [], env, workdir, [], version, key)


def python_on_path(lower: list[str], path: str) -> str:
    """The version of the `python` a container would run, found in overlay layers `lower` (top first):
    "" when there is no `python` on PATH. Full version where the image says it, else the series."""
    for d in path.split(":"):
        if not d.startswith("/"):
            continue
        series = _series_of(lower, d, "python")
        if series is not None:
            return _full_version(lower, series) if series else _any_stdlib(lower)
    return ""


def require_python(manifest: ImageManifest, tag: str) -> str:
    """The image's Python version; a clear error when it has none on PATH (Modal needs `python` in the image)."""
    lower = manifest.lower_dirs()
    version = python_on_path(lower, manifest.env.get("PATH", BASE_ENV["PATH"]))
    if version:
        return version
    has_python3 = any(_series_of(lower, d, "python3") is not None for d in manifest.env.get("PATH", "").split(":"))
    hint = (
        "It has python3 but no `python`: add setup_dockerfile_commands=['RUN ln -s $(command -v python3) "
        "/usr/local/bin/python'] to from_registry."
        if has_python3
        else "Use from_registry(..., add_python='3.11'), or pick an image that has Python installed."
    )
    raise PullFailed(f"The image {tag} has no `python` on PATH, which Modal functions need to run. {hint}")


def _lookup(lower: list[str], path: str) -> Path | None:
    """The topmost layer's entry for an absolute path (None if absent or whited out)."""
    for layer in lower:
        entry = Path(layer) / path.lstrip("/")
        try:
            st = entry.lstat()
        except OSError:
            continue
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            return None  # an overlayfs whiteout: deleted by a layer above
        return entry
    return None


def _series_of(lower: list[str], directory: str, name: str) -> str | None:
    """None if `directory/name` does not exist; else the Python series its symlink chain names ("" unknown)."""
    path = posixpath.join(directory, name)
    for _ in range(10):
        entry = _lookup(lower, _resolve_dirs(lower, posixpath.dirname(path)) + "/" + posixpath.basename(path))
        if entry is None:
            return None
        m = re.fullmatch(r"python(\d+\.\d+)", posixpath.basename(path))
        if m:
            return m.group(1)
        if not entry.is_symlink():
            return ""
        target = os.readlink(entry)
        path = posixpath.normpath(target if target.startswith("/") else posixpath.join(posixpath.dirname(path), target))
    return ""


def _resolve_dirs(lower: list[str], directory: str) -> str:
    """Follow directory symlinks such as /bin → usr/bin (merged-/usr images), one component at a time."""
    out = "/"
    for part in [p for p in directory.split("/") if p]:
        candidate = posixpath.join(out, part)
        for _ in range(10):
            entry = _lookup(lower, candidate)
            if entry is None or not entry.is_symlink():
                break
            target = os.readlink(entry)
            candidate = posixpath.normpath(target if target.startswith("/") else posixpath.join(out, target))
        out = candidate
    return out.rstrip("/") or ""


def _full_version(lower: list[str], series: str) -> str:
    for prefix in ("/usr/local", "/usr", "/opt/conda"):
        header = _lookup(lower, f"{prefix}/include/python{series}/patchlevel.h")
        if header is not None and header.is_file():
            m = re.search(r'#define\s+PY_VERSION\s+"(\d+\.\d+\.\d+)', header.read_text(errors="replace"))
            if m:
                return m.group(1)
    changelog = _lookup(lower, f"/usr/share/doc/python{series}-minimal/changelog.Debian.gz")
    if changelog is not None and changelog.is_file():
        import gzip

        try:
            with gzip.open(changelog, "rt") as f:
                m = re.match(r"\S+ \((\d+\.\d+\.\d+)", f.readline())
        except OSError:
            m = None
        if m:
            return m.group(1)
    return series


def _any_stdlib(lower: list[str]) -> str:
    """A `python` that is not a symlink to pythonX.Y: go by the standard library that is there."""
    for prefix in ("/usr/local/lib", "/usr/lib", "/opt/conda/lib"):
        for layer in lower:
            for lib in sorted((Path(layer) / prefix.lstrip("/")).glob("python3.*"), reverse=True):
                if (lib / "os.py").exists():
                    return _full_version(lower, lib.name.removeprefix("python"))
    return ""


async def _run(argv: list[str], env: dict[str, str] | None) -> tuple[int, bytes, bytes]:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        out, err = await proc.communicate()
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    return proc.returncode or 0, out, err
