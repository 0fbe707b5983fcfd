"""Blob bodies and content-addressed files in an S3-compatible bucket (AWS, SeaweedFS, MinIO, ...).

Keys: `<prefix>blobs/<blob id>` and `<prefix>cas/<sha256>`. boto3 blocks, so every call runs in a
thread. `local_file` fetches a file once into a per-host cache directory; the copy is checked against
its sha256 and renamed into place, so readers (other tasks, other processes) never see half a file."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as EndpointUnreachable

from berth.errors import BerthError, NotFound, Unavailable
from berth.ids import new_id
from berth.store.blob_keys import check_blob_id, check_content, check_sha256
from berth.store.s3.location import S3Location

log = logging.getLogger("berth.store.s3")

T = TypeVar("T")
_MISSING = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchBucket"})
_CHUNK = 1024 * 1024


class S3BlobStore:
    def __init__(self, location: S3Location, cache_dir: Path) -> None:
        self._loc = location
        self._cache = cache_dir
        (cache_dir / "tmp").mkdir(parents=True, exist_ok=True)
        # Short connect timeout and few retries: an unreachable endpoint should surface as an error
        # within seconds, not hang a client's RPC for a minute.
        config = Config(
            connect_timeout=5,
            read_timeout=60,
            retries={"max_attempts": 3, "mode": "standard"},
            max_pool_connections=32,
            s3={"addressing_style": "path"},
        )
        self._client: Any = boto3.client(
            "s3",
            endpoint_url=location.endpoint,
            aws_access_key_id=location.access_key or None,
            aws_secret_access_key=location.secret_key or None,
            region_name=location.region,
            config=config,
        )
        self._fetching: dict[str, asyncio.Lock] = {}

    @classmethod
    async def open(cls, location: S3Location, cache_dir: Path) -> S3BlobStore:
        """The store, with its bucket created if it is missing."""
        store = cls(location, cache_dir)
        await store._run("creating the bucket", store._ensure_bucket)
        log.info("blobs in S3 at %s, bucket %s", location.endpoint, location.bucket)
        return store

    @property
    def scratch_dir(self) -> Path:
        return self._cache / "tmp"

    def new_blob_id(self) -> str:
        return new_id("bl")

    async def write_blob(self, blob_id: str, data: bytes) -> str:
        key = self._blob_key(blob_id)
        md5 = await asyncio.to_thread(lambda: hashlib.md5(data).hexdigest())
        await self._run(f"writing blob {blob_id}", self._put, key, data)
        return md5

    async def read_blob(self, blob_id: str) -> bytes:
        key = self._blob_key(blob_id)
        return await self._run(f"reading blob {blob_id}", self._get, key, missing=f"Blob {blob_id} not found")

    async def has_blob(self, blob_id: str) -> bool:
        return await self._exists(f"looking up blob {blob_id}", self._blob_key(blob_id))

    async def require_blob(self, blob_id: str) -> None:
        if not await self.has_blob(blob_id):
            raise NotFound(f"Blob {blob_id} not found")

    async def has_file(self, sha256_hex: str) -> bool:
        return await self._exists(f"looking up file {sha256_hex}", self._file_key(sha256_hex))

    async def put_file(self, sha256_hex: str, data: bytes) -> None:
        key = self._file_key(sha256_hex)
        await asyncio.to_thread(check_content, sha256_hex, data)
        # Two uploads of one sha race harmlessly: S3 PUTs are atomic and both carry the same bytes.
        await self._run(f"writing file {sha256_hex}", self._put, key, data)

    async def read_file(self, sha256_hex: str) -> bytes:
        key = self._file_key(sha256_hex)
        return await self._run(f"reading file {sha256_hex}", self._get, key, missing=f"File {sha256_hex} not found")

    async def local_file(self, sha256_hex: str) -> Path:
        path = self._cache / check_sha256(sha256_hex)
        if path.exists():
            return path
        lock = self._fetching.setdefault(sha256_hex, asyncio.Lock())
        async with lock:  # one download per file at a time in this process; later waiters find it cached
            if not path.exists():
                await self._run(
                    f"fetching file {sha256_hex}", self._fetch, sha256_hex, path, missing=f"File {sha256_hex} not found"
                )
        self._fetching.pop(sha256_hex, None)
        return path

    # keys
    def _blob_key(self, blob_id: str) -> str:
        return f"{self._loc.prefix}blobs/{check_blob_id(blob_id)}"

    def _file_key(self, sha256_hex: str) -> str:
        return f"{self._loc.prefix}cas/{check_sha256(sha256_hex)}"

    # blocking calls, run in a thread by _run
    def _ensure_bucket(self) -> None:
        try:
            self._client.head_bucket(Bucket=self._loc.bucket)
            return
        except ClientError as exc:
            if _code(exc) not in _MISSING:
                raise
        kwargs: dict[str, Any] = {"Bucket": self._loc.bucket}
        if self._loc.region != "us-east-1":  # AWS refuses an explicit us-east-1 constraint
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self._loc.region}
        try:
            self._client.create_bucket(**kwargs)
        except ClientError as exc:
            if _code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):  # another replica won
                raise

    def _put(self, key: str, data: bytes) -> None:
        self._client.put_object(Bucket=self._loc.bucket, Key=key, Body=data)

    def _get(self, key: str) -> bytes:
        body = self._client.get_object(Bucket=self._loc.bucket, Key=key)["Body"]
        try:
            data: bytes = body.read()
        finally:
            body.close()
        return data

    def _head(self, key: str) -> None:
        self._client.head_object(Bucket=self._loc.bucket, Key=key)

    def _fetch(self, sha256_hex: str, path: Path) -> None:
        tmp = self.scratch_dir / new_id("fetch")
        digest = hashlib.sha256()
        body = self._client.get_object(Bucket=self._loc.bucket, Key=self._file_key(sha256_hex))["Body"]
        try:
            with open(tmp, "wb") as out:
                for chunk in body.iter_chunks(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
            if digest.hexdigest() != sha256_hex:
                raise BerthError(f"File {sha256_hex} in S3 at {self._where} does not match its sha256")
            os.replace(tmp, path)
        finally:
            body.close()
            tmp.unlink(missing_ok=True)

    # error mapping
    @property
    def _where(self) -> str:
        return f"{self._loc.endpoint} (bucket {self._loc.bucket})"

    async def _exists(self, what: str, key: str) -> bool:
        try:
            await self._run(what, self._head, key, missing=f"{key} not found")
        except NotFound:
            return False
        return True

    async def _run(self, what: str, fn: Callable[..., T], *args: Any, missing: str = "") -> T:
        """Runs a blocking boto3 call in a thread and maps what S3 says into Berth's typed errors."""
        try:
            return await asyncio.to_thread(fn, *args)
        except ClientError as exc:
            code = _code(exc)
            if missing and code in _MISSING:
                raise NotFound(missing) from None
            message = exc.response.get("Error", {}).get("Message", "")
            raise BerthError(f"S3 at {self._where} failed {what}: {code} {message}".rstrip()) from None
        except (EndpointUnreachable, HTTPClientError) as exc:
            raise Unavailable(f"S3 endpoint {self._where} unreachable while {what}: {exc}") from None
        except BotoCoreError as exc:  # e.g. no credentials: the server's configuration, not the network
            raise BerthError(f"S3 at {self._where} failed {what}: {exc}") from None


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
