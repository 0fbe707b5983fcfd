"""A deployed function whose containers the autoscaler settings keep warm (tests/e2e/test_autoscaler.py)."""

import time

import modal

app = modal.App("e2e-warm-pool")


@app.function(scaledown_window=2)
def hold(seconds: float) -> str:
    time.sleep(seconds)
    return "held"


@app.function(min_containers=1, scaledown_window=2)
def pinned() -> str:
    return "pinned"
