"""A deployed app with a 2-second period; each run records itself in a Dict named by the app."""

import time

import modal

app = modal.App("e2e-deployed-schedule")
runs = modal.Dict.from_name("e2e-deployed-schedule-runs", create_if_missing=True)


@app.function(schedule=modal.Period(seconds=2))
def tick() -> None:
    runs.put(f"run-{time.time()}", time.time())
    print("deployed tick ran", flush=True)
