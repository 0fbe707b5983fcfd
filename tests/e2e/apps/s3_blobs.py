"""Through a server whose blobs live in S3: an argument and a result too big to send inline, and a
local file mounted into the container."""

import hashlib
import json
import os
import pathlib

import modal

HERE = pathlib.Path(__file__).parent
image = modal.Image.debian_slim().add_local_file(HERE / "s3_note.txt", "/root/s3_note.txt")
app = modal.App("e2e-s3-blobs", image=image)


@app.function()
def digest_and_grow(data: bytes) -> dict:
    # cwd is /root on every runtime (the process runtime has no /root of its own)
    note = pathlib.Path("s3_note.txt").read_text().strip()
    return {"sha256": hashlib.sha256(data).hexdigest(), "note": note, "echo": data[::-1] + b"!" * (3 * 1024 * 1024)}


@app.local_entrypoint()
def main() -> None:
    data = os.urandom(3 * 1024 * 1024)
    out = digest_and_grow.remote(data)
    result = {
        "sha_ok": out["sha256"] == hashlib.sha256(data).hexdigest(),
        "echo_ok": out["echo"][: len(data)] == data[::-1] and len(out["echo"]) == 6 * 1024 * 1024,
        "note": out["note"],
    }
    print("RESULT " + json.dumps(result))
