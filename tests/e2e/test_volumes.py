"""modal.Volume against a real Berth server: the SDK over both protocols (v1 through the mount content
store, v2 through block transfers), paths that leave the volume, concurrent writers, the `modal volume` CLI,
and volumes mounted in containers (under /root: the process runtime has no mount namespace)."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from tests.e2e.conftest import BerthServer, last_json, modal, sdk


@pytest.mark.parametrize("version", [1, 2])
def test_volume_api_uploads_lists_reads_copies_removes_renames_and_deletes(
    berth: BerthServer, version: int, tmp_path: Path
) -> None:
    name = f"e2e-vol-v{version}-{uuid.uuid4().hex[:8]}"
    (tmp_path / "tree" / "deep").mkdir(parents=True)
    (tmp_path / "tree" / "one.txt").write_text("one")
    (tmp_path / "tree" / "deep" / "two.txt").write_text("two")
    (tmp_path / "readme.txt").write_text("read me")
    out = sdk(
        berth,
        f"""
        import hashlib, io, json, os, modal
        from modal.exception import NotFoundError
        big = os.urandom(9 * 1024 * 1024 + 17)  # several v2 blocks; a blob upload for v1
        vol = modal.Volume.from_name({name!r}, create_if_missing=True, version={version})
        with vol.batch_upload() as batch:
            batch.put_file({str(tmp_path / "readme.txt")!r}, "/docs/readme.txt")
            batch.put_file(io.BytesIO(big), "bin/big.bin")
            batch.put_directory({str(tmp_path / "tree")!r}, "/tree")
        r = {{"top": sorted(e.path for e in vol.listdir("/"))}}
        r["all"] = sorted((e.path, e.type.name) for e in vol.listdir("/", recursive=True))
        r["big_ok"] = hashlib.sha256(b"".join(vol.read_file("bin/big.bin"))).digest() == hashlib.sha256(big).digest()
        r["readme"] = b"".join(vol.read_file("docs/readme.txt")).decode()
        try:
            with vol.batch_upload() as batch:
                batch.put_file(io.BytesIO(b"clobber"), "docs/readme.txt")
        except FileExistsError:
            r["no_force"] = "FileExistsError"
        with vol.batch_upload(force=True) as batch:
            batch.put_file(io.BytesIO(b"replaced"), "docs/readme.txt")
        r["forced"] = b"".join(vol.read_file("docs/readme.txt")).decode()
        vol.copy_files(["docs/readme.txt"], "copy.txt")
        vol.copy_files(["copy.txt", "tree/one.txt"], "many/")
        r["copies"] = sorted(e.path for e in vol.listdir("many")) + [b"".join(vol.read_file("copy.txt")).decode()]
        vol.remove_file("tree", recursive=True)
        vol.remove_file("copy.txt")
        try:
            vol.read_file("copy.txt")
            list(vol.read_file("copy.txt"))
        except FileNotFoundError:
            r["removed"] = "FileNotFoundError"
        r["after_remove"] = sorted(e.path for e in vol.listdir("/"))
        with modal.Volume.ephemeral(version={version}) as eph:
            with eph.batch_upload() as batch:
                batch.put_file(io.BytesIO(b"short-lived"), "e.txt")
            r["ephemeral"] = b"".join(eph.read_file("e.txt")).decode()
        modal.Volume.rename({name!r}, {name + "-renamed"!r})
        renamed = modal.Volume.from_name({name + "-renamed"!r})
        r["renamed"] = b"".join(renamed.read_file("docs/readme.txt")).decode()
        r["listed"] = {name + "-renamed"!r} in [v.name for v in modal.Volume.objects.list()]
        modal.Volume.objects.delete({name + "-renamed"!r})
        for gone in ({name!r}, {name + "-renamed"!r}):
            try:
                modal.Volume.from_name(gone).listdir("/")
            except NotFoundError:
                r.setdefault("not_found", []).append(gone)
        print(json.dumps(r))
        """,
    )
    r = last_json(out)
    assert r["top"] == ["bin", "docs", "tree"]
    assert [tuple(e) for e in r["all"]] == [
        ("bin", "DIRECTORY"),
        ("bin/big.bin", "FILE"),
        ("docs", "DIRECTORY"),
        ("docs/readme.txt", "FILE"),
        ("tree", "DIRECTORY"),
        ("tree/deep", "DIRECTORY"),
        ("tree/deep/two.txt", "FILE"),
        ("tree/one.txt", "FILE"),
    ]
    assert r["big_ok"] is True and r["readme"] == "read me"
    assert r["no_force"] == "FileExistsError" and r["forced"] == "replaced"
    assert r["copies"] == ["many/copy.txt", "many/one.txt", "replaced"]
    assert r["removed"] == "FileNotFoundError" and r["after_remove"] == ["bin", "docs", "many"]
    assert r["ephemeral"] == "short-lived"
    assert r["renamed"] == "replaced" and r["listed"] is True
    assert r["not_found"] == [name, name + "-renamed"]


@pytest.mark.parametrize("version", [1, 2])
def test_paths_outside_the_volume_are_refused(berth: BerthServer, version: int) -> None:
    out = sdk(
        berth,
        f"""
        import io, modal
        from modal.exception import InvalidError
        with modal.Volume.ephemeral(version={version}) as vol:
            attempts = {{
                "upload": lambda: vol.batch_upload().__enter__().put_file(io.BytesIO(b"x"), "../escape.txt"),
                "list": lambda: vol.listdir("../"),
                "read": lambda: b"".join(vol.read_file("../../etc/passwd")),
                "copy": lambda: vol.copy_files(["../x"], "y"),
                "remove": lambda: vol.remove_file("a/../../b"),
            }}
            def upload():
                with vol.batch_upload() as batch:
                    batch.put_file(io.BytesIO(b"x"), "../escape.txt")
            attempts["upload"] = upload
            for what, attempt in attempts.items():
                try:
                    attempt()
                    print(what, "ALLOWED")
                except InvalidError as exc:
                    print(what, "refused:", exc)
            print("still serving:", vol.listdir("/"))
        """,
    )
    for what in ("upload", "list", "read", "copy", "remove"):
        assert f"{what} refused:" in out, out
    assert "outside the volume" in out
    assert "ALLOWED" not in out
    assert "still serving: []" in out


def test_concurrent_v2_writers_to_different_files_lose_no_writes(berth: BerthServer) -> None:
    out = sdk(
        berth,
        """
        import io, json, threading, modal
        with modal.Volume.ephemeral(version=2) as vol:
            def write(i):
                with vol.batch_upload() as batch:
                    batch.put_file(io.BytesIO(f"writer {i}".encode() * 1000), f"w/{i}.txt")
            threads = [threading.Thread(target=write, args=(i,)) for i in range(16)]
            for t in threads: t.start()
            for t in threads: t.join()
            names = sorted(e.path for e in vol.listdir("w"))
            ok = all(b"".join(vol.read_file(f"w/{i}.txt")) == f"writer {i}".encode() * 1000 for i in range(16))
            print(json.dumps({"n": len(names), "ok": ok}))
        """,
    )
    assert last_json(out) == {"n": 16, "ok": True}


def test_modal_volume_cli_manages_volumes_and_files(berth: BerthServer, tmp_path: Path) -> None:
    name = f"e2e-vol-cli-{uuid.uuid4().hex[:8]}"
    (tmp_path / "up").mkdir()
    (tmp_path / "up" / "a.txt").write_text("alpha")
    (tmp_path / "single.txt").write_text("single")

    def ok(*args: str) -> str:
        run = modal(berth, "volume", *args)
        assert run.returncode == 0, run.output
        return run.stdout

    ok("create", name)
    assert name in [row["name"] for row in json.loads(ok("list", "--json"))]
    ok("put", name, str(tmp_path / "single.txt"), "/files/")
    ok("put", name, str(tmp_path / "up"), "/dir")
    assert ok("ls", name, "/").split() == ["dir", "files"]
    assert ok("ls", name, "files").split() == ["files/single.txt"]
    again = modal(berth, "volume", "put", name, str(tmp_path / "single.txt"), "/files/")
    assert again.returncode != 0 and "already exists" in again.output
    ok("cp", name, "files/single.txt", "dir/copied.txt")
    (tmp_path / "down").mkdir()
    ok("get", name, "dir", str(tmp_path / "down"))
    assert sorted(p.name for p in (tmp_path / "down" / "dir").iterdir()) == ["a.txt", "copied.txt"]
    assert (tmp_path / "down" / "dir" / "copied.txt").read_text() == "single"
    assert ok("get", name, "dir/a.txt", "-").startswith("alpha")
    ok("rm", name, "files/single.txt")
    assert ok("ls", name, "files").split() == []
    missing = modal(berth, "volume", "rm", name, "files/single.txt")
    assert missing.returncode != 0
    ok("rename", name, name + "-b", "--yes")
    assert ok("ls", name + "-b", "dir").split() == ["dir/a.txt", "dir/copied.txt"]
    ok("delete", name + "-b", "--yes")
    gone = modal(berth, "volume", "ls", name + "-b")
    assert gone.returncode != 0 and "not found" in gone.output


def test_mounted_volume_commit_reload_background_commit_read_only_and_sub_path(berth: BerthServer) -> None:
    run = modal(berth, "run", "vol_mounts.py")
    assert run.returncode == 0, run.output
    assert "'a.txt'" in run.stdout.split("commit-listing=")[1].splitlines()[0]
    assert "reload-read=from-a" in run.stdout  # written and committed by another container
    assert "background-read=from-b" in run.stdout  # not committed explicitly: committed as the container exited
    assert "background commit failed" not in run.output
    assert "read-only-read=from-a" in run.stdout
    assert "sub-listing=['inner.txt']" in run.stdout
    assert "sub-read=inside the sub path" in run.stdout


def test_process_runtime_refuses_a_mount_outside_root_with_a_clear_error(berth: BerthServer) -> None:
    if os.environ.get("BERTH_E2E_RUNTIME", "process") != "process":
        pytest.skip("only the process runtime restricts mount paths")
    run = modal(berth, "run", "vol_mounts.py::mounted_outside_root", timeout=120)
    assert run.returncode != 0
    assert "can only mount volumes under /root, not at /mnt/data" in run.output
    assert "MOUNTED-OUTSIDE-ROOT-RAN" not in run.output


def test_missing_volume_raises_not_found_unless_create_if_missing(berth: BerthServer) -> None:
    out = sdk(
        berth,
        """
        import modal
        from modal.exception import NotFoundError
        try:
            modal.Volume.from_name("e2e-vol-never-created").listdir("/")
        except NotFoundError as exc:
            print("NotFoundError:", exc)
        print(modal.Volume.from_name("e2e-vol-made-on-demand", create_if_missing=True).listdir("/"))
        """,
    )
    assert "NotFoundError: Volume 'e2e-vol-never-created' not found" in out
    assert out.strip().endswith("[]")


def test_isolated_runtime_mounts_volumes_anywhere_and_enforces_read_only(berth_oci: BerthServer) -> None:
    run = modal(berth_oci, "run", "vol_mounts_oci.py", timeout=900)
    assert run.returncode == 0, run.output
    assert "read-only={'read': 'written at /data', 'write': 'refused: Read-only file system'}" in run.stdout
    assert "local-read=written at /data" in run.stdout
    assert "intruder-listed=False" in run.stdout
