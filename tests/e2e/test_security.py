"""Credentials stay where they belong: a container's identity stops working when its task ends, and neither
client tokens nor secret values appear in the server's log. Paths stay where they belong: volume paths with
'..', absolute paths, NUL or symlinks out of the volume are refused or confined to it."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from grpclib.client import Channel
from grpclib.exceptions import GRPCError
from modal_proto import api_grpc, api_pb2

from tests.e2e.conftest import APPS, BerthServer, last_json, modal, sdk, wait_for
from tests.reliability.record import note


def _heartbeat(berth: BerthServer, headers: str) -> str:
    """The status of a ContainerHeartbeat made with a container's credentials header ("OK" or the code)."""
    metadata = dict(pair.split(":", 1) for pair in headers.split(","))

    async def call() -> str:
        ch = Channel("127.0.0.1", berth.port)
        try:
            await api_grpc.ModalClientStub(ch).ContainerHeartbeat(
                api_pb2.ContainerHeartbeatRequest(), metadata=metadata, timeout=30
            )
            return "OK"
        except GRPCError as exc:
            return exc.status.name
        finally:
            ch.close()

    return asyncio.run(call())


def test_a_containers_identity_stops_working_when_its_task_ends(berth: BerthServer) -> None:
    value = f"sv-{uuid.uuid4().hex}"
    made = modal(berth, "secret", "create", "--force", "e2e-identity-secret", f"IDENTITY_VALUE={value}")
    assert made.returncode == 0, made.output
    deployed = modal(berth, "deploy", str(APPS / "identity_app.py"))
    assert deployed.returncode == 0, deployed.output
    seen = last_json(
        sdk(
            berth,
            "import json, modal\nprint(json.dumps(modal.Function.from_name('e2e-identity', 'identity').remote()))",
        )
    )
    assert seen["task_id"] in seen["headers"]
    assert _heartbeat(berth, seen["headers"]) == "OK"  # the container is alive (deployed, warm): it is accepted
    assert modal(berth, "app", "stop", "--yes", "e2e-identity").returncode == 0
    wait_for(lambda: _heartbeat(berth, seen["headers"]) == "UNAUTHENTICATED", "the ended task's identity refused", 90)
    # Nothing that is a credential or a secret value reached the server's log.
    log = berth.log()
    assert value not in log
    assert berth.env["MODAL_TOKEN_SECRET"] not in log
    secret_part = seen["headers"].split("x-berth-task-secret:")[1].split(",")[0]
    assert secret_part not in log


def test_volume_cli_paths_stay_inside_the_volume(berth: BerthServer, tmp_path: Path) -> None:
    """`modal volume put/get/ls/rm` with '..', absolute paths, and symlinks inside the volume that point out
    of it (as a container with the volume mounted can make): refused, or confined to the volume."""
    name = f"e2e-traversal-{uuid.uuid4().hex[:8]}"
    local = tmp_path / "f.txt"
    local.write_text("mine")
    assert modal(berth, "volume", "create", name).returncode == 0
    assert modal(berth, "volume", "put", name, str(local), "/ok.txt").returncode == 0
    # The volume's host directory: the one new directory with this file (each volume is one, by id).
    root = next(p.parent for p in (berth.data_dir / "volumes").glob("*/ok.txt") if p.read_text() == "mine")
    (root / "passwd-link").symlink_to("/etc/passwd")
    (root / "etc-link").symlink_to("/etc")
    refused = {
        "put ..": ("put", name, str(local), "../escaped.txt"),
        "get ..": ("get", name, "../../../../etc/passwd", "-"),
        "ls ..": ("ls", name, "../"),
        "rm ..": ("rm", name, "a/../../b"),
        "get through a symlink": ("get", name, "passwd-link", "-"),
        "ls through a dir symlink": ("ls", name, "etc-link"),
        "put through a dir symlink": ("put", name, str(local), "etc-link/berth-escaped.txt"),
    }
    passwd = Path("/etc/passwd").read_text()
    for what, args in refused.items():
        run = modal(berth, "volume", *args)
        assert run.returncode != 0, (what, run.output)
        assert "outside the volume" in run.output, (what, run.output)
        assert passwd[:40] not in run.output, what
    assert not Path("/etc/berth-escaped.txt").exists() and not (berth.data_dir / "volumes" / "escaped.txt").exists()
    # An absolute path is rooted at the volume, not the host.
    absolute = modal(berth, "volume", "get", name, "/etc/passwd", "-")
    assert absolute.returncode != 0 and passwd[:40] not in absolute.output
    # A whole-volume download never follows a symlink out of it.
    down = tmp_path / "down"
    down.mkdir()
    modal(berth, "volume", "get", name, "/", str(down))
    for path in down.rglob("*"):
        if path.is_file():
            assert passwd[:40] not in path.read_text(errors="replace"), path
    # The link survives its refusals: nothing was removed or rewritten through it.
    rm = modal(berth, "volume", "rm", name, "passwd-link")
    assert rm.returncode == 0 and Path("/etc/passwd").read_text() == passwd
    note(
        "volume CLI path traversal",
        faults=len(refused) + 2,
        outputs_checked=len(refused) + 2,
        errors=0,
        outcome="'..', symlinks out: refused; absolute paths rooted at the volume",
    )


def test_volume_and_mount_paths_with_nul_are_invalid_not_internal(berth: BerthServer) -> None:
    out = sdk(
        berth,
        """
        import io, modal
        from modal.exception import InvalidError
        with modal.Volume.ephemeral(version=2) as vol:
            attempts = {
                "list": lambda: vol.listdir("a\\0b"),
                "read": lambda: b"".join(vol.read_file("a\\0b")),
                "remove": lambda: vol.remove_file("a\\0b"),
            }
            def upload():
                with vol.batch_upload() as batch:
                    batch.put_file(io.BytesIO(b"x"), "a\\0b")
            attempts["upload"] = upload
            for what, attempt in attempts.items():
                try:
                    attempt()
                    print(what, "ALLOWED")
                except InvalidError as exc:
                    print(what, "refused:", exc)
                except Exception as exc:
                    print(what, "OTHER", type(exc).__name__, exc)
        """,
    )
    for what in ("list", "read", "remove", "upload"):
        assert f"{what} refused:" in out and "NUL" in out, out
    assert "ALLOWED" not in out and "OTHER" not in out, out


def test_a_presented_token_secret_is_never_echoed_in_errors_or_logs(berth: BerthServer) -> None:
    wrong = f"as-wrong-{uuid.uuid4().hex}"
    run = modal(berth, "app", "list", env={"MODAL_TOKEN_SECRET": wrong})
    assert run.returncode != 0 and "token" in run.output.lower(), run.output
    assert wrong not in run.output
    assert wrong not in berth.log()


def test_mount_file_names_and_blob_ids_cannot_climb_out(berth: BerthServer) -> None:
    """Mount file names ('..', relative, NUL) are INVALID_ARGUMENT before anything is written, and a blob id
    that is a path is refused by the blob URLs."""
    import requests

    env = berth.env
    md = {
        "x-modal-client-type": "1",
        "x-modal-client-version": "1.6.4",
        "x-modal-token-id": env["MODAL_TOKEN_ID"],
        "x-modal-token-secret": env["MODAL_TOKEN_SECRET"],
    }
    sha = "0" * 64

    async def mount(filename: str) -> str:
        ch = Channel("127.0.0.1", berth.port)
        try:
            req = api_pb2.MountGetOrCreateRequest(
                object_creation_type=api_pb2.OBJECT_CREATION_TYPE_EPHEMERAL,
                files=[api_pb2.MountFile(filename=filename, sha256_hex=sha)],
            )
            await api_grpc.ModalClientStub(ch).MountGetOrCreate(req, metadata=md, timeout=30)
            return "OK"
        except GRPCError as exc:
            return f"{exc.status.name} {exc.message}"
        finally:
            ch.close()

    for name in ("/root/../../etc/cron.d/x", "relative/x.py", "/root/a\0b"):
        answer = asyncio.run(mount(name))
        assert answer.startswith("INVALID_ARGUMENT") and "absolute and normalized" in answer, (name, answer)
    base = f"http://127.0.0.1:{berth.port + 1}/blobs/"
    for blob_id in ("..%2F..%2Fberth.db", "bl-..%2F..%2Fberth.db", "bl-a%00b"):
        got = requests.get(base + blob_id, timeout=30)
        put = requests.put(base + blob_id, data=b"x", timeout=30)
        assert got.status_code in (400, 404) and put.status_code in (400, 404), (blob_id, got.text, put.text)
        assert b"SQLite" not in got.content
