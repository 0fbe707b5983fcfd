"""Volumes on an isolated runtime (crun): mounted at any path, shared across containers, and read-only
where the mount says so."""

from pathlib import Path

import modal

app = modal.App("e2e-volume-mounts-oci")
vol = modal.Volume.from_name("e2e-oci-vol", create_if_missing=True, version=2)


@app.function(volumes={"/data": vol})
def write(name: str, text: str) -> None:
    Path("/data", name).write_text(text)
    vol.commit()


@app.function(volumes={"/mnt/ro": vol.with_mount_options(read_only=True)})
def read_only(name: str) -> dict[str, str]:
    seen = {"read": Path("/mnt/ro", name).read_text()}
    try:
        Path("/mnt/ro", "intruder.txt").write_text("should not land")
        seen["write"] = "allowed"
    except OSError as exc:
        seen["write"] = f"refused: {exc.strerror}"
    return seen


@app.local_entrypoint()
def main() -> None:
    write.remote("shared.txt", "written at /data")
    print(f"read-only={read_only.remote('shared.txt')}")
    print(f"local-read={b''.join(vol.read_file('shared.txt')).decode()}")
    print(f"intruder-listed={'intruder.txt' in [e.path for e in vol.listdir('/')]}")
