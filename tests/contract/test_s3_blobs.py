"""What only the S3 blob store does: its bucket and key layout, its per-host cache of files, and the
errors an operator sees when the endpoint or the keys are wrong. On a real SeaweedFS."""

from __future__ import annotations

import hashlib
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest

from berth.devservices.s3 import SeaweedS3
from berth.errors import BerthError, NotFound, Unavailable
from berth.store.s3.blobs import S3BlobStore
from berth.store.s3.location import S3Location
from tests.contract.s3_fixtures import s3_location


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def raw_client(server: SeaweedS3) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name=server.region,
    )


async def test_opening_creates_a_missing_bucket(seaweed_s3: SeaweedS3, tmp_path: Path) -> None:
    bucket = f"fresh-{uuid.uuid4().hex[:10]}"
    store = await S3BlobStore.open(s3_location(seaweed_s3, bucket), tmp_path)
    blob_id = store.new_blob_id()
    await store.write_blob(blob_id, b"in a new bucket")
    again = await S3BlobStore.open(s3_location(seaweed_s3, bucket), tmp_path)  # a second replica: no error
    assert await again.read_blob(blob_id) == b"in a new bucket"


async def test_bodies_and_files_are_keyed_by_blob_id_and_sha256(seaweed_s3: SeaweedS3, tmp_path: Path) -> None:
    prefix = f"layout-{uuid.uuid4().hex[:8]}/"
    store = await S3BlobStore.open(s3_location(seaweed_s3, prefix=prefix), tmp_path)
    blob_id = store.new_blob_id()
    await store.write_blob(blob_id, b"body")
    await store.put_file(sha(b"file"), b"file")
    listed = raw_client(seaweed_s3).list_objects_v2(Bucket="berth-contract", Prefix=prefix)
    assert sorted(o["Key"] for o in listed["Contents"]) == [f"{prefix}blobs/{blob_id}", f"{prefix}cas/{sha(b'file')}"]


async def test_a_local_file_is_fetched_once_and_again_after_the_cache_is_wiped(
    s3_blobs: S3BlobStore, tmp_path: Path
) -> None:
    data = b"fetched into the cache"
    await s3_blobs.put_file(sha(data), data)
    path = await s3_blobs.local_file(sha(data))
    assert path.parent == tmp_path / "blob-cache" and path.read_bytes() == data
    mtime = path.stat().st_mtime_ns
    time.sleep(0.01)
    assert (await s3_blobs.local_file(sha(data))).stat().st_mtime_ns == mtime  # served from the cache

    path.unlink()
    assert (await s3_blobs.local_file(sha(data))).read_bytes() == data
    assert not list(s3_blobs.scratch_dir.iterdir())  # no partial downloads left behind


async def test_a_file_gone_from_the_bucket_is_still_served_from_the_cache(
    seaweed_s3: SeaweedS3, s3_blobs: S3BlobStore
) -> None:
    data = b"cached before the delete"
    await s3_blobs.put_file(sha(data), data)
    cached = await s3_blobs.local_file(sha(data))
    key = next(
        o["Key"]
        for o in raw_client(seaweed_s3).list_objects_v2(Bucket="berth-contract")["Contents"]
        if o["Key"].endswith(f"cas/{sha(data)}")
    )
    raw_client(seaweed_s3).delete_object(Bucket="berth-contract", Key=key)
    assert not await s3_blobs.has_file(sha(data))
    assert (await s3_blobs.local_file(sha(data))) == cached and cached.read_bytes() == data
    with pytest.raises(NotFound):
        await s3_blobs.read_file(sha(data))


async def test_an_unreachable_endpoint_is_unavailable_and_named(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    location = S3Location(f"http://127.0.0.1:{port}", "nowhere", "k", "s")
    with pytest.raises(Unavailable, match=rf"127\.0\.0\.1:{port}.*unreachable"):
        await S3BlobStore.open(location, tmp_path)


async def test_wrong_keys_are_an_error_that_names_the_endpoint(seaweed_s3: SeaweedS3, tmp_path: Path) -> None:
    location = S3Location(seaweed_s3.endpoint, "berth-contract", seaweed_s3.access_key, "not-the-secret")
    store = S3BlobStore(location, tmp_path)
    with pytest.raises(BerthError, match=seaweed_s3.endpoint.removeprefix("http://")) as info:
        await store.read_blob(store.new_blob_id())
    assert not isinstance(info.value, NotFound | Unavailable)
