"""Cloud bucket mounts through the stock client against a real S3 server on loopback (SeaweedFS): a function
reads and writes a bucket, a read-only mount refuses writes, key_prefix scopes a mount to a "directory", a sandbox
mounts one too, and a missing bucket or refused keys fail the call with s3fs's reason."""

from __future__ import annotations

import ast
import os
import textwrap
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from berth.devservices.s3 import SeaweedS3
from tests.e2e.conftest import BerthServer, python, start_server, stop_server

BUCKET = "e2e-bucket"
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="bucket mounts need the crun runtime, which needs root")


@pytest.fixture(scope="module")
def s3(seaweed_s3: SeaweedS3) -> Any:
    client: Any = boto3.client(
        "s3",
        endpoint_url=seaweed_s3.endpoint,
        aws_access_key_id=seaweed_s3.access_key,
        aws_secret_access_key=seaweed_s3.secret_key,
        region_name=seaweed_s3.region,
    )
    client.create_bucket(Bucket=BUCKET)
    client.put_object(Bucket=BUCKET, Key="seed.txt", Body=b"seeded by the test")
    return client


@pytest.fixture(scope="module")
def berth_crun(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BerthServer]:
    server = start_server(tmp_path_factory.mktemp("berth-buckets") / "data", extra_args=["--runtime", "crun"])
    yield server
    stop_server(server)


def _run(berth: BerthServer, s3server: SeaweedS3, body: str) -> Any:
    code = "import sys; sys.path.insert(0, '.')\nimport modal\nfrom buckets import *\n" + textwrap.dedent(body)
    env = {"E2E_S3_ENDPOINT": s3server.endpoint, "E2E_S3_KEY": s3server.access_key}
    env["E2E_S3_SECRET"] = s3server.secret_key
    run = python(berth, "-c", code, timeout=300, env=env)
    assert run.returncode == 0, run.output + "\n--- server log ---\n" + berth.log()[-3000:]
    return ast.literal_eval([x for x in run.stdout.splitlines() if x.startswith("RESULT=")][-1].removeprefix("RESULT="))


def test_function_reads_and_writes_a_bucket_read_only_and_prefixed_mounts_hold(
    berth_crun: BerthServer, seaweed_s3: SeaweedS3, s3: Any
) -> None:
    result = _run(berth_crun, seaweed_s3, "with app.run():\n    print('RESULT=' + repr(use.remote()))\n")
    assert result["seen"] == result["ro_seen"] == "seeded by the test"
    assert result["ro"].startswith("OSError errno=30"), result["ro"]  # EROFS
    assert result["pre"] == ["inner.txt"]  # only what is under sub/
    assert s3.get_object(Bucket=BUCKET, Key="out.txt")["Body"].read() == b"written by a function"
    assert s3.get_object(Bucket=BUCKET, Key="sub/inner.txt")["Body"].read() == b"under the prefix"
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="nope.txt")


def test_sandbox_mounts_a_bucket(berth_crun: BerthServer, seaweed_s3: SeaweedS3, s3: Any) -> None:
    result = _run(
        berth_crun,
        seaweed_s3,
        """
        with app.run():
            sb = modal.Sandbox.create("cat", "/b/seed.txt", app=app, volumes={"/b": bucket()})
            sb.wait()
            print("RESULT=" + repr(sb.stdout.read()))
        """,
    )
    assert result == "seeded by the test"


@pytest.mark.parametrize(("fn", "reason"), [("missing", "bucket or key not found"), ("refused", "invalid credentials")])
def test_missing_bucket_or_refused_keys_fail_with_the_reason(
    berth_crun: BerthServer, seaweed_s3: SeaweedS3, s3: Any, fn: str, reason: str
) -> None:
    body = f"""
    with app.run():
        try:
            {fn}.remote()
            print("RESULT='no error'")
        except Exception as exc:
            print("RESULT=" + repr(str(exc)))
    """
    message = _run(berth_crun, seaweed_s3, body)
    assert "Cannot mount bucket" in message and reason in message, message
