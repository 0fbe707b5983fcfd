"""Volumes mounted in containers. The process runtime presents mounts under /root only, and its /root is the
task directory (also $HOME), so the functions reach their mounts through Path.home() — on Modal that is /root."""

from pathlib import Path

import modal

app = modal.App("e2e-volume-mounts")
vol = modal.Volume.from_name("e2e-mounted-vol", create_if_missing=True, version=2)


def at(mount: str, name: str) -> Path:
    return Path.home() / mount / name


@app.function(volumes={"/root/vol": vol})
def write_and_commit(name: str, text: str) -> list[str]:
    at("vol", name).write_text(text)
    vol.commit()
    return sorted(p.name for p in at("vol", "").iterdir())


@app.function(volumes={"/root/vol": vol})
def read_after_reload(name: str) -> str:
    vol.reload()
    return at("vol", name).read_text()


@app.function(volumes={"/root/vol": vol})
def write_without_commit(name: str, text: str) -> None:
    at("vol", name).write_text(text)


@app.function(volumes={"/root/ro": vol.with_mount_options(read_only=True)})
def read_only_reader(name: str) -> str:
    return at("ro", name).read_text()


@app.function(volumes={"/root/sub": vol.with_mount_options(sub_path="/nested/dir")})
def sub_path_writer() -> list[str]:
    at("sub", "inner.txt").write_text("inside the sub path")
    return sorted(p.name for p in at("sub", "").iterdir())


@app.function(volumes={"/mnt/data": vol})
def mounted_outside_root() -> None:
    print("MOUNTED-OUTSIDE-ROOT-RAN")


@app.local_entrypoint()
def main() -> None:
    print(f"commit-listing={write_and_commit.remote('a.txt', 'from-a')}")
    print(f"reload-read={read_after_reload.remote('a.txt')}")
    write_without_commit.remote("b.txt", "from-b")
    print(f"background-read={b''.join(vol.read_file('b.txt')).decode()}")
    print(f"read-only-read={read_only_reader.remote('a.txt')}")
    print(f"sub-listing={sub_path_writer.remote()}")
    print(f"sub-read={b''.join(vol.read_file('nested/dir/inner.txt')).decode()}")
