"""Where the S3 blob store is: parsed from BERTH_BLOBS_URL.

Form: `s3://ACCESS_KEY:SECRET_KEY@HOST[:PORT]/BUCKET[/PREFIX][?region=R&scheme=http|https]`.
Keys may be percent-encoded. The scheme defaults to http for a loopback host (a dev SeaweedFS or MinIO)
and https otherwise; the region to us-east-1. Without keys boto3's own credential chain applies."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from berth.errors import InvalidArgument

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class S3Location:
    endpoint: str  # scheme://host:port
    bucket: str
    access_key: str = ""
    secret_key: str = ""
    region: str = "us-east-1"
    prefix: str = ""  # key prefix inside the bucket, "" or ending in "/"

    @classmethod
    def parse(cls, url: str) -> S3Location:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.hostname:
            shape = "s3://KEY:SECRET@HOST:PORT/BUCKET"
            raise InvalidArgument(f"BERTH_BLOBS_URL must look like {shape}, not {_redact(url)}")
        bucket, _, prefix = parts.path.lstrip("/").partition("/")
        if not bucket:
            raise InvalidArgument(f"BERTH_BLOBS_URL names no bucket: {_redact(url)}")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        scheme = query.get("scheme") or ("http" if parts.hostname in _LOOPBACK else "https")
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        netloc = f"{host}:{parts.port}" if parts.port else host
        return cls(
            endpoint=f"{scheme}://{netloc}",
            bucket=bucket,
            access_key=unquote(parts.username or ""),
            secret_key=unquote(parts.password or ""),
            region=query.get("region", "us-east-1"),
            prefix=prefix.strip("/") + "/" if prefix.strip("/") else "",
        )


def _redact(url: str) -> str:
    """The URL without its secret, for error messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)
