"""The Modal app the Berth driver runs: one trivial function, defined at module level like a user's."""

from __future__ import annotations

import os
import time

import modal

app = modal.App("berth-bench")


@app.function()
def probe(x: int) -> tuple[int, float]:
    """Trivial work: say which process handled the input, and when."""
    return os.getpid(), time.time()
