"""Reports the container's own identity (its task id and the credentials header Berth gave it), and reads
a secret without printing it."""

import os

import modal

app = modal.App("e2e-identity")


@app.function(secrets=[modal.Secret.from_name("e2e-identity-secret")])
def identity() -> dict[str, str]:
    assert os.environ["IDENTITY_VALUE"].startswith("sv-")  # read, never printed
    return {"task_id": os.environ["MODAL_TASK_ID"], "headers": os.environ["MODAL_OVERRIDE_HEADERS"]}
