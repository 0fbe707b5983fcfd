"""A function whose containers die before they reach the server: PYTHONHOME points nowhere, so the
interpreter cannot even start (on the process runtime the secret's env reaches it before Python runs)."""

import modal

app = modal.App("e2e-startup-crash")


@app.function(secrets=[modal.Secret.from_dict({"PYTHONHOME": "/nonexistent-python-home"})])
def never_starts() -> str:
    return "unreachable"


@app.local_entrypoint()
def main():
    try:
        never_starts.remote()
    except Exception as exc:
        print(f"FAILED {type(exc).__name__}: {exc}")
