"""Volumes, secrets, dicts and queues survive kill -9 of the server: written through the SDK, read back
through the SDK from a new server process on the same data directory."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

from tests.e2e.conftest import modal, sdk, start_server, stop_server

WRITE = """
import io, modal
d = modal.Dict.from_name("dur-dict", create_if_missing=True)
d.update({"k": {"nested": [1, 2]}, ("t", 1): b"bytes"})
q = modal.Queue.from_name("dur-queue", create_if_missing=True)
q.put_many(["first", "second"])
q.put("side", partition="p")
for version in (1, 2):
    vol = modal.Volume.from_name(f"dur-vol-v{version}", create_if_missing=True, version=version)
    with vol.batch_upload() as batch:
        batch.put_file(io.BytesIO(b"persisted" * 1000), "dir/file.bin")
modal.Secret.objects.create("dur-secret", {"KEY": "kept-value"})
print("written")
"""

READ = """
import json, modal
d = modal.Dict.from_name("dur-dict")
q = modal.Queue.from_name("dur-queue")
r = {"dict": [d["k"], repr(d[("t", 1)]), d.len()]}
r["queue"] = [q.get_many(10, timeout=5), q.get(partition="p", timeout=5)]
for version in (1, 2):
    vol = modal.Volume.from_name(f"dur-vol-v{version}")
    r[f"v{version}"] = b"".join(vol.read_file("dir/file.bin")) == b"persisted" * 1000
print(json.dumps(r))
"""

PROBE = """
import os
import modal

app = modal.App("dur-secret-probe")


@app.function(secrets=[modal.Secret.from_name("dur-secret", required_keys=["KEY"])])
def probe() -> str:
    return os.environ["KEY"]


@app.local_entrypoint()
def main() -> None:
    print(f"secret-in-container={probe.remote()}")
"""

WRONG_KEY = """
import modal
try:
    modal.Secret.from_name("dur-secret").hydrate()
except Exception as exc:
    print(type(exc).__name__, exc)
"""


def test_state_objects_survive_kill_9_of_the_server(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    key = base64.urlsafe_b64encode(os.urandom(32)).decode()
    server = start_server(data_dir, {"BERTH_SECRETS_KEY": key})
    try:
        assert "written" in sdk(server, WRITE)
    finally:
        server.proc.kill()
        server.proc.wait(timeout=30)
    (tmp_path / "probe.py").write_text(PROBE)
    server = start_server(data_dir, {"BERTH_SECRETS_KEY": key})
    try:
        r = json.loads(sdk(server, READ).strip().splitlines()[-1])
        probe = modal(server, "run", str(tmp_path / "probe.py"))
    finally:
        stop_server(server)
    assert probe.returncode == 0, probe.output
    assert "secret-in-container=kept-value" in probe.stdout
    assert r["dict"] == [{"nested": [1, 2]}, "b'bytes'", 2]
    assert r["queue"] == [["first", "second"], "side"]
    assert r["v1"] is True and r["v2"] is True
    assert not (data_dir / "secrets.key").exists()  # the operator's key was used, no key file was made

    other_key = base64.urlsafe_b64encode(os.urandom(32)).decode()
    server = start_server(data_dir, {"BERTH_SECRETS_KEY": other_key})
    try:
        wrong = sdk(server, WRONG_KEY)
    finally:
        stop_server(server)
    assert "cannot be decrypted" in wrong and "BERTH_SECRETS_KEY" in wrong
