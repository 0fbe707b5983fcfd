"""A server with BERTH_BLOBS_URL at a real SeaweedFS: `modal run` of an app whose argument and result
travel as blobs and whose mounted file goes through the content store, all held in S3."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from berth.devservices.s3 import SeaweedS3
from tests.e2e.conftest import BerthServer, modal, start_server, stop_server

BUCKET = "berth-e2e"


@pytest.fixture(scope="module")
def berth_s3(seaweed_s3: SeaweedS3, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BerthServer]:
    data_dir = tmp_path_factory.mktemp("berth-s3") / "data"
    server = start_server(data_dir, extra_env={"BERTH_BLOBS_URL": seaweed_s3.blobs_url(BUCKET)})
    yield server
    stop_server(server)


def _keys(server: SeaweedS3) -> list[str]:
    client: Any = boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name=server.region,
    )
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def test_big_arguments_results_and_mounts_go_through_s3(berth_s3: BerthServer, seaweed_s3: SeaweedS3) -> None:
    run = modal(berth_s3, "run", "s3_blobs.py", timeout=300)
    assert run.returncode == 0, run.output + berth_s3.log()[-3000:]
    line = next(x for x in run.stdout.splitlines() if x.startswith("RESULT "))
    assert json.loads(line.removeprefix("RESULT ")) == {
        "sha_ok": True,
        "echo_ok": True,
        "note": "mounted from the client through S3",
    }
    keys = _keys(seaweed_s3)
    assert sum(k.startswith("blobs/bl-") for k in keys) >= 2  # the argument and the result
    assert any(k.startswith("cas/") for k in keys)  # the mounted file and the app's own source
    local = berth_s3.data_dir / "blobs"
    assert not local.exists() or not any(p.name.startswith("bl-") for p in local.iterdir())
