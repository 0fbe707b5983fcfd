"""A deployed app whose calls say which code and which container answered (tests/e2e/test_rollover.py)."""

import os

import modal

VERSION = "v1"

app = modal.App("e2e-rollover")


@app.function(scaledown_window=120)
def whoami() -> str:
    return f"{VERSION} {os.environ['MODAL_TASK_ID']}"
