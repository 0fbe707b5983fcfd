"""Scheduled functions: a short modal.Period and a modal.Cron with a timezone. Each run prints a line
and records its start time in a Dict, so tests can count runs from the logs or from the Dict."""

import sys
import time
import uuid

import modal

app = modal.App("e2e-schedules")
CONTAINER = uuid.uuid4().hex[:8]  # pids repeat across isolated containers' namespaces
runs = modal.Dict.from_name("e2e-schedule-runs", create_if_missing=True)


@app.function(schedule=modal.Period(seconds=3))
def every_3s() -> None:
    now = time.time()
    runs.put(f"period-{now}", now)
    print(f"period run at {now:.3f}")


@app.function(schedule=modal.Cron("* * * * *", timezone="Asia/Kolkata"))
def every_minute() -> None:
    now = time.time()
    runs.put(f"cron-{now}", now)
    print(f"cron run at {now:.3f}")


@app.function(schedule=modal.Period(seconds=4))
def slow_every_4s() -> None:
    print(f"slow run starts at {time.time():.3f} in container {CONTAINER}", flush=True)
    time.sleep(9)


if __name__ == "__main__":
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 65
    with modal.enable_output(), app.run():
        time.sleep(seconds)
