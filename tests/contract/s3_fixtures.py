"""A real SeaweedFS S3 gateway for the session, and blob stores on it and on a local directory."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from berth.devservices.s3 import SeaweedS3, WeedMissing, start_seaweed_s3
from berth.store.local_blobs import LocalBlobStore
from berth.store.ports import BlobStore
from berth.store.s3.blobs import S3BlobStore
from berth.store.s3.location import S3Location

BUCKET = "berth-contract"


@pytest.fixture(scope="session")
def seaweed_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    try:
        server = start_seaweed_s3(tmp_path_factory.mktemp("seaweedfs"))
    except WeedMissing as exc:
        pytest.fail(str(exc))  # the suite needs the real engine: never a silent skip
    print(f"\nSeaweedFS S3 at {server.endpoint} ready in {server.started_in_s:.2f}s")
    yield server
    server.stop(grace_s=0.5)


def s3_location(server: SeaweedS3, bucket: str = BUCKET, prefix: str = "") -> S3Location:
    return S3Location(server.endpoint, bucket, server.access_key, server.secret_key, server.region, prefix)


async def open_s3_blobs(server: SeaweedS3, cache_dir: Path) -> S3BlobStore:
    """A store on the session's bucket under a prefix of its own, so tests never see each other's keys."""
    return await S3BlobStore.open(s3_location(server, prefix=f"t-{uuid.uuid4().hex[:12]}/"), cache_dir)


@pytest.fixture
async def s3_blobs(seaweed_s3: SeaweedS3, tmp_path: Path) -> S3BlobStore:
    return await open_s3_blobs(seaweed_s3, tmp_path / "blob-cache")


@pytest.fixture(params=["local", "s3"])
async def blob_store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "local":
        return LocalBlobStore(tmp_path / "blobs")
    # Looked up only for the s3 cases, so a run of just the local cases never starts SeaweedFS.
    server: SeaweedS3 = request.getfixturevalue("seaweed_s3")
    return await open_s3_blobs(server, tmp_path / "blob-cache")
