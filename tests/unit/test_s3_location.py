"""BERTH_BLOBS_URL: how an operator names an S3-compatible bucket."""

from __future__ import annotations

import pytest

from berth.errors import InvalidArgument
from berth.store.s3.location import S3Location


def test_a_loopback_endpoint_defaults_to_plain_http() -> None:
    loc = S3Location.parse("s3://AK:SK@127.0.0.1:8333/bucket")
    assert loc == S3Location("http://127.0.0.1:8333", "bucket", "AK", "SK", "us-east-1", "")


def test_any_other_host_defaults_to_https_and_query_options_override() -> None:
    loc = S3Location.parse("s3://AK:SK@s3.example.com/b/some/prefix/?region=eu-west-1")
    assert (loc.endpoint, loc.bucket, loc.region) == ("https://s3.example.com", "b", "eu-west-1")
    assert loc.prefix == "some/prefix/"
    assert S3Location.parse("s3://AK:SK@minio:9000/b?scheme=http").endpoint == "http://minio:9000"


def test_keys_may_be_percent_encoded() -> None:
    loc = S3Location.parse("s3://AK:a%2Fb%40c@127.0.0.1:1/b")
    assert loc.secret_key == "a/b@c"


@pytest.mark.parametrize("url", ["http://AK:SK@host/b", "s3://AK:SK@host", "s3://AK:SK@host/", "s3:///b"])
def test_a_malformed_url_is_refused_without_echoing_the_secret(url: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        S3Location.parse(url)
    assert "SK" not in info.value.message
