"""modal.Secret against a real Berth server: every source reaches the container as environment variables,
required keys are checked before a container starts, the `modal secret` CLI, and values stay encrypted:
never in plain text under the data directory, in the server log, or in an API reply."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import uuid
from pathlib import Path

from grpclib.client import Channel
from modal_proto import api_grpc, api_pb2

from tests.e2e.conftest import BerthServer, modal


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def create_named_secret(berth: BerthServer, value: str) -> None:
    run = modal(berth, "secret", "create", "e2e-named-secret", f"FROM_NAME={value}", "OTHER=x", "--force")
    assert run.returncode == 0, run.output


def test_secrets_from_every_source_are_injected_as_environment_variables(berth: BerthServer, tmp_path: Path) -> None:
    named = f"named-{uuid.uuid4().hex}"
    create_named_secret(berth, named)
    (tmp_path / ".env").write_text("FROM_DOTENV=dotenv-value\n")
    env = {"E2E_DOTENV_DIR": str(tmp_path), "FROM_LOCAL": "local-value"}
    run = modal(berth, "run", "secrets_env.py", env=env)
    assert run.returncode == 0, run.output
    assert f"FROM_DICT={sha('dict-value')}" in run.stdout
    assert f"FROM_NAME={sha(named)}" in run.stdout
    assert f"FROM_DOTENV={sha('dotenv-value')}" in run.stdout
    assert f"FROM_LOCAL={sha('local-value')}" in run.stdout


def test_missing_required_key_fails_before_any_container_starts_and_names_the_key(berth: BerthServer) -> None:
    create_named_secret(berth, "whatever")
    run = modal(berth, "run", "secrets_missing_key.py", timeout=120)
    assert run.returncode != 0
    assert "missing required keys: NOT_THERE" in run.output
    assert "NEVER-RUNS-RAN" not in run.output
    assert "Created Function never_runs" not in run.output  # failed while loading the app's objects


def test_modal_secret_cli_creates_lists_refuses_duplicates_overwrites_and_deletes(berth: BerthServer) -> None:
    name = f"e2e-secret-cli-{uuid.uuid4().hex[:8]}"
    value = f"cli-{uuid.uuid4().hex}"
    created = modal(berth, "secret", "create", name, f"TOKEN={value}")
    assert created.returncode == 0, created.output
    assert value not in created.output
    listed = modal(berth, "secret", "list", "--json")
    assert listed.returncode == 0, listed.output
    assert name in [row["name"] for row in json.loads(listed.stdout)]
    assert value not in listed.output
    again = modal(berth, "secret", "create", name, "TOKEN=other")
    assert again.returncode != 0 and "already exists" in again.output
    assert modal(berth, "secret", "create", name, "TOKEN=other", "NEW=1", "--force").returncode == 0
    deleted = modal(berth, "secret", "delete", name, "--yes")
    assert deleted.returncode == 0, deleted.output
    missing = modal(berth, "secret", "delete", name, "--yes")
    assert missing.returncode != 0 and f"Secret '{name}' not found" in missing.output
    assert name not in [row["name"] for row in json.loads(modal(berth, "secret", "list", "--json").stdout)]


async def test_secret_values_never_appear_in_plain_text_in_the_data_dir_logs_or_api_replies(
    berth: BerthServer, tmp_path: Path
) -> None:
    value = f"plaintext-canary-{uuid.uuid4().hex}"
    name = f"e2e-secret-canary-{uuid.uuid4().hex[:8]}"
    created = modal(berth, "secret", "create", name, f"CANARY={value}")
    assert created.returncode == 0, created.output
    create_named_secret(berth, value)
    (tmp_path / ".env").write_text(f"FROM_DOTENV={value}\n")
    # The same value also travels as a from_dotenv and a from_local_environ secret into a container.
    run = modal(berth, "run", "secrets_env.py", env={"FROM_LOCAL": value, "E2E_DOTENV_DIR": str(tmp_path)})
    assert run.returncode == 0, run.output

    env = berth.env
    metadata = {"x-modal-token-id": env["MODAL_TOKEN_ID"], "x-modal-token-secret": env["MODAL_TOKEN_SECRET"]}
    channel = Channel("127.0.0.1", berth.port)
    try:
        stub = api_grpc.ModalClientStub(channel)
        lookup = api_pb2.SecretGetOrCreateRequest(deployment_name=name)
        looked_up = await stub.SecretGetOrCreate(lookup, metadata=metadata)
        info_req = api_pb2.SecretGetInfoRequest(secret_id=looked_up.secret_id)
        info = await stub.SecretGetInfo(info_req, metadata=metadata)
        listed = await stub.SecretList(api_pb2.SecretListRequest(), metadata=metadata)
    finally:
        channel.close()
    assert list(info.metadata.keys) == ["CANARY"]
    for reply in (looked_up, info, listed):
        assert value.encode() not in reply.SerializeToString()

    canary = value.encode()
    offenders = [
        str(path)
        for path in [*berth.data_dir.rglob("*"), berth.log_path]
        if path.is_file() and canary in path.read_bytes()
    ]
    assert offenders == []
    key_file = berth.data_dir / "secrets.key"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
