"""Two functions that each hold a container for a while, and two schedules, for the quota tests."""

import time

import modal

app = modal.App("e2e-quota")


@app.function(scaledown_window=2)
def hold_a(seconds: float) -> tuple[float, float]:
    start = time.time()
    time.sleep(seconds)
    return start, time.time()


@app.function(scaledown_window=2)
def hold_b(seconds: float) -> tuple[float, float]:
    start = time.time()
    time.sleep(seconds)
    return start, time.time()


@app.function(schedule=modal.Period(hours=1))
def tick_one() -> None:
    pass


@app.function(schedule=modal.Cron("0 * * * *"))
def tick_two() -> None:
    pass
