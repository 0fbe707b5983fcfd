"""Cloud bucket mounts (`modal.CloudBucketMount`): what a container's worker needs to mount an S3-compatible bucket
(AWS S3, Cloudflare R2, Google Cloud Storage through its S3 interface, or any S3 server such as SeaweedFS or MinIO),
with the keys taken from the mount's secret. What Berth cannot do is refused by name when the container is laid
out, before anything starts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from urllib.parse import urlsplit

from modal_proto import api_pb2

from berth.domain.spec import BucketMount
from berth.errors import InvalidArgument, Unimplemented

GCS_ENDPOINT = "https://storage.googleapis.com"
SecretEnv = Callable[[str], Awaitable[dict[str, str]]]


def _literal_host(endpoint: str) -> bool:
    """An endpoint named by an address or localhost cannot take <bucket>.<host> (virtual-hosted) requests."""
    host = urlsplit(endpoint).hostname or ""
    return host == "localhost" or host.replace(".", "").isdigit() or ":" in host


async def bucket_mount(
    mount: api_pb2.CloudBucketMount, secret_env: SecretEnv, inline: Mapping[str, str] | None = None
) -> BucketMount:
    """`inline`: the keys a sandbox's client sent with its create (a Secret.from_dict it did not store)."""
    if mount.oidc_auth_role_arn:
        raise Unimplemented(
            "Berth does not support OIDC role authentication for CloudBucketMount (oidc_auth_role_arn): give the "
            "bucket's keys in a secret (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)"
        )
    env = dict(inline or {})
    if mount.credentials_secret_id:
        env = await secret_env(mount.credentials_secret_id)
    endpoint = mount.bucket_endpoint_url
    if mount.bucket_type == api_pb2.CloudBucketMount.GCP and not endpoint:
        endpoint = GCS_ENDPOINT
    if mount.bucket_type == api_pb2.CloudBucketMount.R2 and not endpoint:
        raise InvalidArgument("A CloudBucketMount of an R2 bucket needs its bucket_endpoint_url")
    access = env.get("AWS_ACCESS_KEY_ID") or env.get("GOOGLE_ACCESS_KEY_ID", "")
    secret = env.get("AWS_SECRET_ACCESS_KEY") or env.get("GOOGLE_ACCESS_KEY_SECRET", "")
    if bool(access) != bool(secret):
        raise InvalidArgument(
            f"The secret of the CloudBucketMount of '{mount.bucket_name}' needs both AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY"
        )
    return BucketMount(
        bucket=mount.bucket_name,
        mount_path=mount.mount_path,
        endpoint_url=endpoint,
        key_prefix=mount.key_prefix,
        read_only=mount.read_only,
        path_style=mount.force_path_style or (bool(endpoint) and _literal_host(endpoint)),
        access_key_id=access,
        secret_access_key=secret,
        region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION", ""),
        requester_pays=mount.requester_pays,
    )


async def bucket_mounts(
    mounts: Iterable[api_pb2.CloudBucketMount],
    secret_env: SecretEnv,
    inline: Mapping[str, api_pb2.StringMap] | None = None,
) -> list[BucketMount]:
    """`inline`: keys by mount path, as SandboxCreateV2's cloud_bucket_mount_credentials carries them."""
    given = inline or {}
    return [
        await bucket_mount(m, secret_env, dict(given[m.mount_path].contents) if m.mount_path in given else None)
        for m in mounts
    ]
