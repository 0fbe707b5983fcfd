"""Functions that probe the container's limits and network."""

import socket
import urllib.request

import modal

app = modal.App("e2e-isolation")


@app.function(memory=128)
def hog(mb: int) -> int:
    chunks = [bytearray(1024 * 1024) for _ in range(mb)]
    return len(chunks)


@app.function()
def network() -> dict[str, str]:
    with urllib.request.urlopen("https://pypi.org/simple/six/", timeout=30) as resp:
        status = str(resp.status)
    return {"status": status, "hostname": socket.gethostname()}


@app.local_entrypoint()
def main(mb: int = 512) -> None:
    print(f"hog={hog.remote(mb)}")
