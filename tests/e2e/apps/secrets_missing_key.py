"""A function whose named secret lacks a required key: the run must fail before any container starts."""

import modal

app = modal.App("e2e-secrets-missing-key")


@app.function(secrets=[modal.Secret.from_name("e2e-named-secret", required_keys=["FROM_NAME", "NOT_THERE"])])
def never_runs() -> None:
    print("NEVER-RUNS-RAN")
