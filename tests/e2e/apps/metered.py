"""Burns a known amount of CPU, for the metering and billing tests."""

import time

import modal

app = modal.App("e2e-metered", tags={"team": "metering-e2e", "project": "berth"})


@app.function()
def burn(seconds: float = 2.0) -> float:
    """Spins until this thread has used `seconds` of CPU time; returns what it used."""
    start = time.thread_time()
    while time.thread_time() - start < seconds:
        pass
    return time.thread_time() - start
