"""modal.NetworkFileSystem against a real Berth server: the `modal nfs` CLI, the SDK's file calls, and the
shared directory mounted in functions and sandboxes, where a write is visible at once everywhere (no commit)."""

from __future__ import annotations

import json
import textwrap
import uuid
from pathlib import Path

from tests.e2e.conftest import BerthServer, last_json, modal, sdk


def test_modal_nfs_cli_creates_lists_puts_gets_removes_and_deletes(berth: BerthServer, tmp_path: Path) -> None:
    name = f"e2e-nfs-cli-{uuid.uuid4().hex[:8]}"
    (tmp_path / "up" / "sub").mkdir(parents=True)
    (tmp_path / "up" / "a.txt").write_text("alpha")
    (tmp_path / "up" / "sub" / "b.txt").write_text("beta")
    (tmp_path / "single.txt").write_text("single")

    def ok(*args: str) -> str:
        run = modal(berth, "nfs", *args)
        assert run.returncode == 0, run.output
        return run.stdout

    assert f"Created volume '{name}'" in ok("create", name)
    again = modal(berth, "nfs", "create", name)
    assert again.returncode != 0 and "already exists" in again.output
    assert name in [row["name"] for row in json.loads(ok("list", "--json"))]
    ok("put", name, str(tmp_path / "single.txt"), "/files/")
    ok("put", name, str(tmp_path / "up"), "/dir")
    assert ok("ls", name, "/").split() == ["dir", "files"]
    assert ok("ls", name, "files").split() == ["files/single.txt"]
    ok("put", name, str(tmp_path / "up" / "a.txt"), "/files/single.txt")  # NFS overwrites
    assert ok("get", name, "files/single.txt", "-").startswith("alpha")
    (tmp_path / "down").mkdir()
    ok("get", name, "**", str(tmp_path / "down"))
    got = sorted(p.relative_to(tmp_path / "down").as_posix() for p in (tmp_path / "down").rglob("*") if p.is_file())
    assert got == ["dir/a.txt", "dir/sub/b.txt", "files/single.txt"]
    assert (tmp_path / "down" / "dir" / "sub" / "b.txt").read_text() == "beta"
    not_empty = modal(berth, "nfs", "rm", name, "dir")
    assert not_empty.returncode != 0 and "non-empty directory" in not_empty.output
    ok("rm", name, "-r", "dir")
    assert ok("ls", name, "/").split() == ["files"]
    missing = modal(berth, "nfs", "rm", name, "dir")
    assert missing.returncode != 0 and "No such file" in missing.output
    ok("delete", name, "--yes")
    assert name not in [row["name"] for row in json.loads(ok("list", "--json"))]
    gone = modal(berth, "nfs", "ls", name)
    assert gone.returncode != 0 and "not found" in gone.output


def test_nfs_sdk_writes_reads_lists_large_files_and_ephemeral(berth: BerthServer) -> None:
    out = sdk(
        berth,
        """
        import hashlib, io, json, os, modal
        big = os.urandom(5 * 1024 * 1024 + 3)  # larger than an inline message: a blob each way
        nfs = modal.NetworkFileSystem.from_name("e2e-nfs-sdk", create_if_missing=True)
        nfs.write_file("big/blob.bin", io.BytesIO(big))
        r = {"big_ok": hashlib.sha256(b"".join(nfs.read_file("big/blob.bin"))).digest() == hashlib.sha256(big).digest()}
        r["glob"] = sorted(e.path for e in nfs.listdir("**/*.bin"))
        try:
            list(nfs.read_file("nope.txt"))
        except FileNotFoundError:
            r["missing"] = "FileNotFoundError"
        try:
            nfs.write_file("../escape.txt", io.BytesIO(b"x"))
        except Exception as exc:
            r["escape"] = str(exc)
        with modal.NetworkFileSystem.ephemeral() as eph:
            eph.write_file("e.txt", io.BytesIO(b"short-lived"))
            r["ephemeral"] = b"".join(eph.read_file("e.txt")).decode()
        print(json.dumps(r))
        """,
    )
    r = last_json(out)
    assert r["big_ok"] is True
    assert r["glob"] == ["big/blob.bin"]
    assert r["missing"] == "FileNotFoundError"
    assert "outside the volume" in r["escape"]
    assert r["ephemeral"] == "short-lived"


def test_mounted_nfs_writes_are_seen_at_once_by_other_containers_and_the_client(berth: BerthServer) -> None:
    run = modal(berth, "run", "nfs_mounts.py", timeout=300)
    assert run.returncode == 0, run.output
    assert "client-read=written in a container" in run.stdout
    assert "container-read=written by the client" in run.stdout  # seen by a running container, no reload
    assert "listing=['from-client.txt', 'from-fn.txt', 'nested']" in run.stdout


def test_sandboxes_share_a_mounted_nfs_while_both_run(berth_oci: BerthServer) -> None:
    body = textwrap.dedent(
        """
        import json, modal
        app = modal.App.lookup("e2e-nfs-sandboxes", create_if_missing=True)
        image = modal.Image.debian_slim()
        nfs = modal.NetworkFileSystem.from_name("e2e-nfs-sb", create_if_missing=True)
        one = modal.Sandbox.create(app=app, image=image, network_file_systems={"/mnt/shared": nfs})
        two = modal.Sandbox.create(app=app, image=image, network_file_systems={"/mnt/shared": nfs})
        one.exec("sh", "-c", "echo from-one > /mnt/shared/note").wait()
        seen = two.exec("cat", "/mnt/shared/note").stdout.read()
        client = b"".join(nfs.read_file("note")).decode()
        one.terminate(); two.terminate()
        print(json.dumps({"seen": seen, "client": client}))
        """
    )
    r = last_json(sdk(berth_oci, body, timeout=600))
    assert r == {"seen": "from-one\n", "client": "from-one\n"}


def test_remote_workers_refuse_nfs_mounts_by_name_but_serve_its_files(tmp_path: Path) -> None:
    from tests.e2e.test_cluster import start_control_plane

    cluster = start_control_plane(tmp_path)
    try:
        run = modal(cluster.server, "run", "nfs_mounts.py", timeout=120)
        assert run.returncode != 0
        assert "NetworkFileSystem mounts are not supported with remote workers" in run.output
        assert "no filesystem shared across hosts" in run.output
        (tmp_path / "f.txt").write_text("still reachable")
        put = modal(cluster.server, "nfs", "put", "e2e-mounted-nfs", str(tmp_path / "f.txt"), "/")
        assert put.returncode == 0, put.output
        got = modal(cluster.server, "nfs", "get", "e2e-mounted-nfs", "f.txt", "-")
        assert got.stdout.startswith("still reachable"), got.output
    finally:
        cluster.stop()
