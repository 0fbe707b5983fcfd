"""Cloud bucket mounts of an S3 server on loopback (SeaweedFS; its endpoint and keys come from the test's
environment): read, write, read-only, a key prefix, a missing bucket and refused keys."""

import os

import modal

app = modal.App("e2e-buckets")
ENDPOINT = os.environ.get("E2E_S3_ENDPOINT", "http://127.0.0.1:9")
KEYS = modal.Secret.from_dict(
    {
        "AWS_ACCESS_KEY_ID": os.environ.get("E2E_S3_KEY", ""),
        "AWS_SECRET_ACCESS_KEY": os.environ.get("E2E_S3_SECRET", ""),
    }
)
BAD_KEYS = modal.Secret.from_dict({"AWS_ACCESS_KEY_ID": "nobody", "AWS_SECRET_ACCESS_KEY": "wrong"})
BUCKET = "e2e-bucket"


def bucket(name: str = BUCKET, secret: modal.Secret = KEYS, **kw) -> modal.CloudBucketMount:
    return modal.CloudBucketMount(name, bucket_endpoint_url=ENDPOINT, secret=secret, **kw)


@app.function(volumes={"/data": bucket(), "/ro": bucket(read_only=True), "/pre": bucket(key_prefix="sub/")})
def use() -> dict:
    seen = open("/data/seed.txt").read()
    with open("/data/out.txt", "w") as f:
        f.write("written by a function")
    with open("/pre/inner.txt", "w") as f:
        f.write("under the prefix")
    try:
        with open("/ro/nope.txt", "w") as f:
            f.write("x")
        ro = "writable"
    except OSError as exc:
        ro = type(exc).__name__ + f" errno={exc.errno}"
    return {"seen": seen, "ro_seen": open("/ro/seed.txt").read(), "ro": ro, "pre": sorted(os.listdir("/pre"))}


@app.function(volumes={"/m": bucket("no-such-bucket")})
def missing() -> list:
    return os.listdir("/m")


@app.function(volumes={"/m": bucket(secret=BAD_KEYS)})
def refused() -> list:
    return os.listdir("/m")
