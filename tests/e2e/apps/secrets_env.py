"""Secrets from every source, injected into the container as environment variables. The function returns
hashes of what it sees, so no secret value is ever stored as a call result."""

import hashlib
import os

import modal

app = modal.App("e2e-secrets")
KEYS = ["FROM_DICT", "FROM_NAME", "FROM_DOTENV", "FROM_LOCAL"]


@app.function(
    secrets=[
        modal.Secret.from_dict({"FROM_DICT": "dict-value"}),
        modal.Secret.from_name("e2e-named-secret", required_keys=["FROM_NAME"]),
        modal.Secret.from_dotenv(os.environ.get("E2E_DOTENV_DIR", "/nonexistent")),
        modal.Secret.from_local_environ(["FROM_LOCAL"]),
    ]
)
def seen() -> dict[str, str | None]:
    return {k: hashlib.sha256(os.environ[k].encode()).hexdigest() if k in os.environ else None for k in KEYS}


@app.local_entrypoint()
def main() -> None:
    for key, digest in seen.remote().items():
        print(f"{key}={digest}")
