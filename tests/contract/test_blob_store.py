"""The blob port's contract, on every backend: the local directory and S3 (a real SeaweedFS)."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import pytest

from berth.errors import InvalidArgument, NotFound
from berth.store.ports import BlobStore

BAD_BLOB_IDS = ["", "bl-", "../bl-x", "bl-../../etc/passwd", "bl-a/b", "bl-a\\b", "bl-a b", "xx-abc", "bl-" + "a" * 70]
BAD_SHAS = ["", "ab", "../" + "a" * 61, "A" * 64, "g" * 64, "a" * 63 + "/", "a" * 65]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def test_a_written_blob_reads_back_and_its_etag_is_the_md5(blob_store: BlobStore) -> None:
    blob_id = blob_store.new_blob_id()
    etag = await blob_store.write_blob(blob_id, b"hello blob")
    assert etag == hashlib.md5(b"hello blob").hexdigest()
    assert await blob_store.read_blob(blob_id) == b"hello blob"
    assert await blob_store.has_blob(blob_id)
    await blob_store.require_blob(blob_id)


async def test_rewriting_a_blob_replaces_its_body(blob_store: BlobStore) -> None:
    blob_id = blob_store.new_blob_id()
    await blob_store.write_blob(blob_id, b"first")
    await blob_store.write_blob(blob_id, b"second")
    assert await blob_store.read_blob(blob_id) == b"second"


async def test_an_empty_blob_is_a_blob(blob_store: BlobStore) -> None:
    blob_id = blob_store.new_blob_id()
    await blob_store.write_blob(blob_id, b"")
    assert await blob_store.has_blob(blob_id) and await blob_store.read_blob(blob_id) == b""


async def test_a_missing_blob_is_not_found(blob_store: BlobStore) -> None:
    blob_id = blob_store.new_blob_id()
    assert not await blob_store.has_blob(blob_id)
    with pytest.raises(NotFound, match=blob_id):
        await blob_store.read_blob(blob_id)
    with pytest.raises(NotFound, match=blob_id):
        await blob_store.require_blob(blob_id)


async def test_new_blob_ids_are_distinct_and_well_formed(blob_store: BlobStore) -> None:
    ids = {blob_store.new_blob_id() for _ in range(100)}
    assert len(ids) == 100 and all(i.startswith("bl-") for i in ids)


@pytest.mark.parametrize("blob_id", BAD_BLOB_IDS)
async def test_a_malformed_blob_id_is_invalid_never_a_path(blob_store: BlobStore, blob_id: str) -> None:
    with pytest.raises(InvalidArgument):
        await blob_store.write_blob(blob_id, b"x")
    with pytest.raises(InvalidArgument):
        await blob_store.read_blob(blob_id)
    with pytest.raises(InvalidArgument):
        await blob_store.has_blob(blob_id)
    with pytest.raises(InvalidArgument):
        await blob_store.require_blob(blob_id)


@pytest.mark.parametrize("bad", BAD_SHAS)
async def test_a_malformed_sha256_is_invalid_never_a_path(blob_store: BlobStore, bad: str) -> None:
    with pytest.raises(InvalidArgument):
        await blob_store.has_file(bad)
    with pytest.raises(InvalidArgument):
        await blob_store.put_file(bad, b"x")
    with pytest.raises(InvalidArgument):
        await blob_store.read_file(bad)
    with pytest.raises(InvalidArgument):
        await blob_store.local_file(bad)


async def test_a_file_is_stored_under_its_sha256(blob_store: BlobStore) -> None:
    data = b"print('mounted')\n"
    assert not await blob_store.has_file(sha(data))
    await blob_store.put_file(sha(data), data)
    assert await blob_store.has_file(sha(data))
    assert await blob_store.read_file(sha(data)) == data
    path = await blob_store.local_file(sha(data))
    assert path.read_bytes() == data


async def test_content_that_does_not_match_its_sha256_is_refused_and_not_stored(blob_store: BlobStore) -> None:
    claimed = sha(b"the real content")
    with pytest.raises(InvalidArgument, match="does not match"):
        await blob_store.put_file(claimed, b"something else")
    assert not await blob_store.has_file(claimed)


async def test_a_missing_file_is_not_found(blob_store: BlobStore) -> None:
    missing = sha(b"never stored")
    with pytest.raises(NotFound, match=missing):
        await blob_store.read_file(missing)
    with pytest.raises(NotFound, match=missing):
        await blob_store.local_file(missing)


async def test_concurrent_puts_of_one_file_leave_it_whole(blob_store: BlobStore) -> None:
    data = os.urandom(3 * 1024 * 1024)
    await asyncio.gather(*(blob_store.put_file(sha(data), data) for _ in range(8)))
    assert await blob_store.read_file(sha(data)) == data
    paths = await asyncio.gather(*(blob_store.local_file(sha(data)) for _ in range(8)))
    assert len(set(paths)) == 1 and paths[0].read_bytes() == data


async def test_a_local_file_is_the_same_path_each_time(blob_store: BlobStore) -> None:
    data = b"cached"
    await blob_store.put_file(sha(data), data)
    first = await blob_store.local_file(sha(data))
    assert await blob_store.local_file(sha(data)) == first


async def test_large_bodies_round_trip(blob_store: BlobStore) -> None:
    data = os.urandom(20 * 1024 * 1024)
    blob_id = blob_store.new_blob_id()
    assert await blob_store.write_blob(blob_id, data) == hashlib.md5(data).hexdigest()
    assert await blob_store.read_blob(blob_id) == data
    await blob_store.put_file(sha(data), data)
    assert await blob_store.read_file(sha(data)) == data
    path = await blob_store.local_file(sha(data))
    assert path.stat().st_size == len(data) and sha(path.read_bytes()) == sha(data)


async def test_the_scratch_dir_is_a_writable_directory(blob_store: BlobStore) -> None:
    scratch: Path = blob_store.scratch_dir
    assert scratch.is_dir()
    (scratch / "probe").write_bytes(b"x")
    (scratch / "probe").unlink()
