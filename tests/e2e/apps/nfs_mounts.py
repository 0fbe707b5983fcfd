"""A NetworkFileSystem mounted in containers: no commit and no reload, a write is seen at once by every other
container and by the client. The process runtime presents mounts under /root only (its /root is $HOME)."""

import time
from pathlib import Path

import modal

app = modal.App("e2e-nfs-mounts")
nfs = modal.NetworkFileSystem.from_name("e2e-mounted-nfs", create_if_missing=True)


def at(name: str) -> Path:
    return Path.home() / "shared" / name


@app.function(network_file_systems={"/root/shared": nfs})
def write(name: str, text: str) -> None:
    at(name).parent.mkdir(parents=True, exist_ok=True)
    at(name).write_text(text)


@app.function(network_file_systems={"/root/shared": nfs})
def wait_for_file(name: str) -> str:
    """Runs while the client writes the file: it appears here without any reload."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if at(name).exists():
            return at(name).read_text()
        time.sleep(0.1)
    return "never appeared"


@app.local_entrypoint()
def main() -> None:
    write.remote("from-fn.txt", "written in a container")
    print(f"client-read={b''.join(nfs.read_file('from-fn.txt')).decode()}")
    waiting = wait_for_file.spawn("from-client.txt")
    time.sleep(2)
    import io

    nfs.write_file("from-client.txt", io.BytesIO(b"written by the client"))
    print(f"container-read={waiting.get(timeout=90)}")
    write.remote("nested/deep.txt", "deep")
    print(f"listing={sorted(e.path for e in nfs.listdir('/'))}")
